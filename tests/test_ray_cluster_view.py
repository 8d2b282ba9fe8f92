"""The Ray executor's view of the nodes (``executors/ray/cluster.py``) against a listing of
fake nodes, in the shape ``ray.nodes()`` gives: when it asks for the nodes again, and what it
says of a request that no live node can hold.  No Ray, no processes."""

from __future__ import annotations

from typing import Any

from training_plugin.executors.ray.cluster import ClusterView


class Listing:
    """What ``ray.nodes()`` answers (``alive``: the live node names), and how often it was
    asked."""

    def __init__(self, **nodes: dict[str, float]) -> None:
        self.nodes = nodes
        self.alive = set(nodes)
        self.asked = 0
        self.unreachable = False

    def __call__(self) -> list[dict[str, Any]]:
        self.asked += 1
        if self.unreachable:
            raise ConnectionError("the cluster went away")
        return [{"NodeID": name, "Alive": name in self.alive, "NodeManagerAddress": "10.0.0.1",
                 "NodeName": name, "Resources": resources}
                for name, resources in self.nodes.items()]


class FakeRay:
    def __init__(self, listing: Listing) -> None:
        self.nodes = listing


def view_of(**nodes: dict[str, float]) -> tuple[ClusterView, Listing]:
    listing = Listing(**nodes)
    return ClusterView(FakeRay(listing)), listing


def test_a_request_a_known_node_holds_asks_for_no_listing() -> None:
    view, listing = view_of(head={"CPU": 2}, second={"CPU": 2, "second": 1})
    assert listing.asked == 1  # the first listing
    assert view.nowhere({"CPU": 1, "second": 1}) == (None, False)
    assert listing.asked == 1


def test_a_request_no_known_node_holds_is_checked_against_a_new_listing() -> None:
    view, listing = view_of(head={"CPU": 2})
    listing.nodes["big"] = {"CPU": 2, "GPU": 1}  # joined since
    listing.alive.add("big")
    assert view.nowhere({"GPU": 1}) == (None, False)
    assert listing.asked == 2


def test_many_questions_after_one_refresh_ask_once() -> None:
    # what the executor does when a node is lost under a job: one listing for every job
    # waiting in Ray's queue, then a question per job without listing again
    view, listing = view_of(head={"CPU": 1}, second={"CPU": 1, "second": 1})
    view.lose("second")
    listing.alive.discard("second")
    view.try_refresh()
    answers = [view.nowhere({"CPU": 1, "second": 1}, refresh=False) for _ in range(5)]
    assert listing.asked == 2
    why, lost = answers[0]
    assert lost and why is not None and why.startswith("node 10.0.0.1 (second) was lost"), why


def test_a_lost_node_is_never_counted_again_while_the_head_still_lists_it() -> None:
    view, listing = view_of(head={"CPU": 1}, second={"CPU": 1, "second": 1})
    view.lose("second")
    assert "second" in listing.alive  # the head has not noticed yet
    assert set(view.refresh()) == {"head"}
    why, lost = view.nowhere({"second": 1})
    assert lost and why is not None


def test_a_listing_that_fails_keeps_the_last_view() -> None:
    view, listing = view_of(head={"CPU": 1})
    listing.unreachable = True
    assert view.nowhere({"GPU": 1})[0] is not None  # asked, failed, answered from the last view
    assert listing.asked == 2
    assert view.node("head", "10.0.0.1").name == "head"
    assert view.node("gone", "10.0.0.9").ip == "10.0.0.9"  # a node it never saw


def test_the_capacities_are_the_live_nodes_whole_resources() -> None:
    view, _ = view_of(head={"CPU": 1}, second={"CPU": 2, "second": 1})
    view.lose("second")
    assert view.capacities == {"head": {"CPU": 1}}
