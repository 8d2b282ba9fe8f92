"""What a job asks of the cluster and what its nodes offer: Ray's resource names, the words
for them (the job table's names), and whether any node can ever hold a request.

Pure: no ``ray`` import.  A node's resources are Ray's (``CPU``, ``GPU``, ``memory`` in bytes,
custom names, ``node:...``), as ``ray.nodes()`` lists them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MSG_INFEASIBLE = "asks for {asked}, which no node of the cluster has ({offer})"
#: The resource Ray gives the head node only.
HEAD_RESOURCE = "node:__internal_head__"
#: Ray's names of the standard resources -> the job table's.
RAY_TO_TABLE = {"CPU": "cpus", "GPU": "gpus", "memory": "memory"}
#: Resources every node has that say nothing about what a job may ask for.
_NOT_OFFERED = ("object_store_memory",)


@dataclass
class Node:
    """One live node of the cluster."""

    node_id: str
    ip: str
    name: str
    resources: dict[str, float]

    @property
    def label(self) -> str:
        """The IP, with the node's name when it has its own."""
        return self.ip if self.name in ("", self.ip) else f"{self.ip} ({self.name})"

    @property
    def where(self) -> str:
        """``ray:<name>`` (the name is the IP unless the node was given one)."""
        return f"ray:{self.name or self.ip}"

    @property
    def is_head(self) -> bool:
        """Whether this is the cluster's head node."""
        return bool(self.resources.get(HEAD_RESOURCE))


def live_nodes(infos: Iterable[Mapping[str, Any]]) -> dict[str, Node]:
    """The live nodes of a ``ray.nodes()`` listing, by node id."""
    nodes = {}
    for info in infos:
        if not info.get("Alive"):
            continue
        node = Node(node_id=info["NodeID"], ip=info.get("NodeManagerAddress", "?"),
                    name=info.get("NodeName") or "", resources=dict(info.get("Resources", {})))
        nodes[node.node_id] = node
    return nodes


def format_amount(name: str, value: float) -> str:
    """``cpus=4``, ``memory=1GiB`` (memory in bytes, shown in GiB)."""
    if name == "memory":
        return f"memory={value / 2**30:.3g}GiB"
    return f"{name}={value:g}"


def ray_request(resources: Mapping[str, Any]) -> dict[str, float]:
    """A job's ``resources`` (the job table's cpus, gpus, memory, resources) in Ray's names:
    CPU (1 unless given), GPU, memory, custom names; amounts of zero left out."""
    request: dict[str, float] = {"CPU": float(resources.get("cpus", 1) or 0)}
    if resources.get("gpus"):
        request["GPU"] = float(resources["gpus"])
    if resources.get("memory"):
        request["memory"] = float(resources["memory"])
    for name, amount in (resources.get("resources") or {}).items():
        request[name] = float(amount)
    return {k: v for k, v in request.items() if v}


def describe_request(request: Mapping[str, float]) -> str:
    """``cpus=4, gpus=1, bigmem=1`` (the job table's names)."""
    return ", ".join(format_amount(RAY_TO_TABLE.get(k, k), v) for k, v in request.items())


def describe_offer(resources: Mapping[str, float]) -> str:
    """What one node offers, in the job table's names (Ray's internal resources left out)."""
    shown = []
    for key in ("CPU", "GPU", "memory"):
        if resources.get(key):
            shown.append(format_amount(RAY_TO_TABLE[key], resources[key]))
    for key, value in sorted(resources.items()):
        if key in RAY_TO_TABLE or key in _NOT_OFFERED or key.startswith(
                ("node:", "accelerator_type:")):
            continue
        shown.append(format_amount(key, value))
    return ", ".join(shown) or "nothing"


def holds(resources: Mapping[str, float], request: Mapping[str, float]) -> bool:
    """Whether a node with ``resources`` in all can ever run ``request``."""
    return all(resources.get(k, 0.0) >= v for k, v in request.items())


def fitting(nodes: Iterable[Node], request: Mapping[str, float]) -> list[Node]:
    """The nodes that can ever run ``request``."""
    return [n for n in nodes if holds(n.resources, request)]


def infeasible_message(request: Mapping[str, float], nodes: Iterable[Node]) -> str:
    """Why no node can run ``request``: what it asks for and what each node offers."""
    offer = "; ".join(f"node {n.label}: {describe_offer(n.resources)}"
                      for n in nodes) or "no live nodes"
    return MSG_INFEASIBLE.format(asked=describe_request(request), offer=offer)
