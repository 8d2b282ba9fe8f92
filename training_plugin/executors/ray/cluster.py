"""``ClusterView``: the executor's view of the cluster's nodes: which are alive, which were lost
under a job (never counted again), and why no live node can hold a request.

The view asks Ray for its nodes (``ray.nodes()``) only when it must: when no node it knows of
can hold a request (nodes may have joined since), and when the executor asks it to
(``refresh``).  A question about many requests at once asks once (``nowhere(...,
refresh=False)`` after one ``refresh``).
"""

from __future__ import annotations

from typing import Any

from training_plugin.executors.ray.resources import (
    Node,
    fitting,
    holds,
    infeasible_message,
    live_nodes,
)
from training_plugin.executors.ray.stream import MSG_NO_NODE_LEFT


class ClusterView:
    """The live nodes as last listed, less the nodes lost under a job."""

    def __init__(self, ray: Any) -> None:
        self._ray = ray
        #: the live nodes (by id), lost ones left out
        self.nodes: dict[str, Node] = {}
        #: nodes lost under a job (by id): never counted again (a node that comes back is a
        #: new node, with a new id)
        self.lost: dict[str, Node] = {}
        self._known: dict[str, Node] = {}  #: every node seen alive (for a lost one's resources)
        self.refresh()

    @property
    def capacities(self) -> dict[str, dict[str, float]]:
        """Each live node's whole resources, by node id (what the release queue lays jobs on)."""
        return {node_id: node.resources for node_id, node in self.nodes.items()}

    def refresh(self) -> dict[str, Node]:
        """List the live nodes again (a node lost under a job is left out, also while the head
        still lists it alive)."""
        nodes = live_nodes(self._ray.nodes())
        self._known.update(nodes)
        self.nodes = {node_id: node for node_id, node in nodes.items()
                      if node_id not in self.lost}
        return self.nodes

    def try_refresh(self) -> None:
        """``refresh``, keeping the last view when the cluster cannot be reached."""
        try:
            self.refresh()
        except Exception:  # noqa: BLE001 - the cluster is unreachable: keep the last view
            pass

    def nowhere(self, request: dict[str, float], refresh: bool = True
                ) -> tuple[str | None, bool]:
        """Why no live node can ever hold ``request`` (None when one can), and whether that is
        because a node that could hold it was lost (an infrastructure failure).  With
        ``refresh`` (the default), a request that no known node holds is checked against the
        nodes listed again (they may have joined since)."""
        if fitting(self.nodes.values(), request):
            return None, False
        if refresh:
            self.try_refresh()
            if fitting(self.nodes.values(), request):
                return None, False
        why = infeasible_message(request, self.nodes.values())
        lost = [node.label for node in self.lost.values() if holds(node.resources, request)]
        if lost:
            return MSG_NO_NODE_LEFT.format(node=", ".join(lost), why=why), True
        return why, False

    def lose(self, node_id: str) -> None:
        """The node ``node_id`` was lost under a job: never counted again."""
        self.lost[node_id] = self._known.get(node_id) or Node(node_id, "?", "", {})
        self.nodes = {nid: node for nid, node in self.nodes.items() if nid != node_id}

    def node(self, node_id: str, ip: str) -> Node:
        """The node a job started on (listed again when it is not known yet)."""
        if node_id not in self.nodes:
            self.try_refresh()
        return self.nodes.get(node_id) or Node(node_id, ip, "", {})

    def on_head(self) -> dict[str, Any]:
        """Scheduling options that keep an actor on the head node (the relay: on another node,
        that node's loss would cut every job's stream, not only its own jobs')."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        for node in self.nodes.values():
            if node.is_head:
                return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node.node_id,
                                                                              soft=False)}
        return {}
