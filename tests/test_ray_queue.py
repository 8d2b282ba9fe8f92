"""The Ray executor's release queue (``executors/ray/queue.py``) against fake nodes: no Ray,
no processes, no sleeps; every release and placement decision asserted.

A fake node is its whole resources in Ray's names; the queue is told what started where and
what finished, as the executor tells it from the jobs' streams."""

from __future__ import annotations

import pytest

from training_plugin.executors.ray.queue import QUEUE_MODES, ReleaseQueue

ONE_CPU = {"CPU": 1.0}


def two_nodes(**second: float) -> dict[str, dict[str, float]]:
    """A head and a second node of one CPU each (``second`` adds to the second node)."""
    return {"head": dict(ONE_CPU), "second": {**ONE_CPU, **second}}


def queue_of(*jobs: str, request: dict[str, float] | None = None,
             mode: str = "executor") -> ReleaseQueue:
    queue = ReleaseQueue(mode)
    for job in jobs:
        queue.add(job, request or ONE_CPU)
    return queue


def test_first_fit_in_the_order_given():
    queue = queue_of("a", "b", "c", "d", "e")
    decision = queue.release(two_nodes())
    assert decision.placed == [("a", "head"), ("b", "second")]
    assert decision.infeasible == []
    assert queue.waiting == ["c", "d", "e"]
    assert queue.running == ["a", "b"]


def test_a_job_waits_while_no_node_has_room():
    queue = queue_of("a", "b", "c")
    queue.release(two_nodes())
    assert queue.release(two_nodes()).placed == []  # a and b still hold both CPUs
    queue.started("a", "head")
    assert queue.release(two_nodes()).placed == []
    assert queue.waiting == ["c"]


def test_each_end_releases_the_next_job_in_order_onto_the_freed_node():
    queue = queue_of("a", "b", "c", "d", "e")
    queue.release(two_nodes())
    queue.started("a", "head")
    queue.started("b", "second")
    queue.finished("b")
    assert queue.release(two_nodes()).placed == [("c", "second")]
    queue.started("c", "second")
    queue.finished("a")
    assert queue.release(two_nodes()).placed == [("d", "head")]
    queue.finished("c")
    assert queue.release(two_nodes()).placed == [("e", "second")]
    assert queue.waiting == []
    assert queue.running == ["d", "e"]


def test_a_started_job_counts_on_its_own_node_and_an_unstarted_one_first_fit():
    # b was released but has not started: it counts on the first node with room (head, once
    # a's end freed it), so c is counted on the second node.  Once b is seen on the second
    # node, the head is the free one.
    queue = queue_of("a", "b", "c")
    queue.release(two_nodes())
    queue.finished("a")
    assert queue.release(two_nodes()).placed == [("c", "second")]

    queue = queue_of("a", "b", "c")
    queue.release(two_nodes())
    queue.started("b", "second")
    queue.finished("a")
    assert queue.release(two_nodes()).placed == [("c", "head")]


def test_a_job_too_big_for_the_room_left_waits_and_a_later_one_that_fits_goes_first():
    nodes = {"big": {"CPU": 2.0}, "small": {"CPU": 1.0}}
    queue = ReleaseQueue()
    queue.add("wide", {"CPU": 2.0})
    queue.add("wide2", {"CPU": 2.0})
    queue.add("narrow", {"CPU": 1.0})
    assert queue.release(nodes).placed == [("wide", "big"), ("narrow", "small")]
    assert queue.waiting == ["wide2"]
    queue.started("wide", "big")
    queue.finished("narrow")
    assert queue.release(nodes).placed == []  # the small node's CPU is not enough
    queue.finished("wide")
    assert queue.release(nodes).placed == [("wide2", "big")]


def test_a_request_no_node_can_hold_is_infeasible_and_leaves_the_others_be():
    queue = ReleaseQueue()
    queue.add("huge", {"CPU": 3.0})
    queue.add("ok", ONE_CPU)
    queue.add("bigmem", {"CPU": 1.0, "bigmem": 1.0})
    decision = queue.release(two_nodes())
    assert decision.placed == [("ok", "head")]
    assert decision.infeasible == ["huge", "bigmem"]
    assert queue.waiting == [] and queue.running == ["ok"]


def test_a_waiting_job_whose_only_node_left_becomes_infeasible():
    queue = ReleaseQueue()
    queue.add("first", {"CPU": 1.0, "second": 1.0})
    queue.add("then", {"CPU": 1.0, "second": 1.0})
    queue.release(two_nodes(second=1.0))
    queue.started("first", "second")
    assert queue.release(two_nodes(second=1.0)).placed == []  # waits for the second node
    decision = queue.release({"head": dict(ONE_CPU)})  # the second node is gone
    assert decision.placed == [] and decision.infeasible == ["then"]


def test_gpus_go_only_where_gpus_are_and_one_at_a_time_per_gpu():
    nodes = {"cpu": {"CPU": 4.0}, "gpu": {"CPU": 4.0, "GPU": 1.0}}
    queue = ReleaseQueue()
    queue.add("train1", {"CPU": 1.0, "GPU": 1.0})
    queue.add("train2", {"CPU": 1.0, "GPU": 1.0})
    queue.add("plain", {"CPU": 1.0})
    assert queue.release(nodes).placed == [("train1", "gpu"), ("plain", "cpu")]
    assert queue.waiting == ["train2"]
    queue.started("train1", "gpu")
    queue.finished("train1")
    assert queue.release(nodes).placed == [("train2", "gpu")]


def test_fractional_gpus_share_a_device():
    queue = ReleaseQueue()
    for job in ("a", "b", "c"):
        queue.add(job, {"CPU": 1.0, "GPU": 0.5})
    decision = queue.release({"gpu": {"CPU": 4.0, "GPU": 1.0}})
    assert decision.placed == [("a", "gpu"), ("b", "gpu")]
    assert queue.waiting == ["c"]


def test_custom_resources_and_memory_are_counted_like_cpus():
    mib = 2.0**20
    nodes = {"head": {"CPU": 4.0, "memory": 100 * mib},
             "second": {"CPU": 4.0, "memory": 100 * mib, "second": 1.0}}
    queue = ReleaseQueue()
    queue.add("far", {"CPU": 1.0, "second": 1.0})
    queue.add("far2", {"CPU": 1.0, "second": 1.0})
    queue.add("fat", {"CPU": 1.0, "memory": 80 * mib})
    queue.add("fat2", {"CPU": 1.0, "memory": 80 * mib})
    queue.add("thin", {"CPU": 1.0, "memory": 20 * mib})
    decision = queue.release(nodes)
    assert decision.placed == [("far", "second"), ("fat", "head"), ("fat2", "second"),
                               ("thin", "head")]
    assert queue.waiting == ["far2"]


def test_fractions_that_add_up_to_a_node_fill_it_exactly():
    # 1.0 - 3 * 0.3 is 0.0999... in floats: the last 0.1 still fits, a further one does not
    queue = ReleaseQueue()
    for job in ("a", "b", "c"):
        queue.add(job, {"CPU": 0.3})
    queue.add("d", {"CPU": 0.1})
    queue.add("e", {"CPU": 0.1})
    assert queue.release({"head": {"CPU": 1.0}}).released == ["a", "b", "c", "d"]
    assert queue.waiting == ["e"]


def test_the_nodes_are_tried_in_the_order_given():
    queue = queue_of("a")
    assert queue.release({"z": dict(ONE_CPU), "a": dict(ONE_CPU)}).placed == [("a", "z")]


def test_the_ray_mode_releases_everything_at_once_in_order():
    queue = queue_of("a", "b", "c", "d", "e", mode="ray")
    huge = "f"
    queue.add(huge, {"CPU": 64.0})
    decision = queue.release(two_nodes())
    assert decision.placed == [(job, None) for job in "abcdef"]  # Ray places and queues them
    assert decision.infeasible == []
    assert queue.waiting == [] and queue.running == list("abcdef")
    queue.add("late", ONE_CPU)
    assert queue.release(two_nodes()).released == ["late"]


def test_adding_a_job_twice_queues_it_once():
    queue = queue_of("a", "b")
    queue.add("a", ONE_CPU)
    assert queue.waiting == ["a", "b"]
    queue.release(two_nodes())
    queue.add("a", ONE_CPU)  # running: not queued again
    assert queue.waiting == [] and queue.running == ["a", "b"]


def test_drain_gives_up_every_waiting_job_and_keeps_the_running_ones():
    queue = queue_of("a", "b", "c", "d")
    queue.release(two_nodes())
    assert queue.drain() == ["c", "d"]
    queue.finished("a")
    assert queue.release(two_nodes()).placed == []
    assert queue.running == ["b"]


def test_a_failed_release_frees_its_room():
    # the executor calls finished() when submitting the task fails
    queue = queue_of("a", "b", "c")
    queue.release(two_nodes())
    queue.finished("b")
    assert queue.release(two_nodes()).placed == [("c", "second")]


def test_finishing_or_starting_an_unknown_job_changes_nothing():
    queue = queue_of("a")
    queue.finished("nope")
    queue.started("nope", "head")
    assert queue.release(two_nodes()).placed == [("a", "head")]


@pytest.mark.parametrize("mode", ["fifo", ""])
def test_an_unknown_mode_is_refused(mode):
    assert "executor" in QUEUE_MODES and "ray" in QUEUE_MODES
    with pytest.raises(ValueError, match="queue mode"):
        ReleaseQueue(mode)


def test_a_job_that_shuns_a_node_goes_to_another_while_one_could_hold_it():
    queue = ReleaseQueue()
    queue.add("a", {"CPU": 1}, shun=frozenset({"head"}))
    assert queue.release(two_nodes()).placed == [("a", "second")]
    queue.add("b", {"CPU": 1}, shun=frozenset({"head"}))
    assert queue.release(two_nodes()).placed == []  # second is busy: b waits for it
    queue.finished("a")
    assert queue.release(two_nodes()).placed == [("b", "second")]


def test_a_job_shunning_the_only_node_that_could_hold_it_goes_there():
    queue = ReleaseQueue()
    queue.add("far", {"CPU": 1, "second": 1}, shun=frozenset({"second"}))
    assert queue.release(two_nodes(second=1)).placed == [("far", "second")]
    queue.add("late", {"CPU": 1}, shun=frozenset({"head"}))
    # the other node left: the shunned one is all there is
    assert queue.release({"head": {"CPU": 2}}).placed == [("late", "head")]
