"""The controller's view of the cluster at one instant: plain data handed to the pure decision functions."""

from __future__ import annotations

from dataclasses import dataclass, field

from drover.shared.models import (
    Assignment,
    ContainerStatus,
    NodeControl,
    NodeRegistration,
    NodeStatus,
    ServiceRecord,
)


@dataclass
class NodeState:
    reg: NodeRegistration
    ctl: NodeControl
    last_heartbeat: float | None  # controller clock; None = not heard since this controller started
    seen_since: float  # when this controller first knew the node (start time for a restarted controller)
    boot_id: str = ""
    generation_seen: int = 0
    observed: dict[str, ContainerStatus] = field(default_factory=dict)  # replica id -> status


@dataclass
class Snapshot:
    now: float
    node_grace: float
    services: dict[str, ServiceRecord]
    nodes: dict[str, NodeState]
    assignments: dict[str, Assignment]  # node -> assignment (possibly a node with no registration)
    term: int = 1
    ready_since: dict[str, float] = field(default_factory=dict)  # replica id -> first seen ready (controller clock)


def node_status(node: NodeState, now: float, grace: float) -> NodeStatus:
    """lost when no heartbeat for ``grace`` seconds (counted from when this controller first knew it)."""
    last = node.last_heartbeat if node.last_heartbeat is not None else node.seen_since
    if now - last > grace:
        return NodeStatus.LOST
    if node.ctl.draining:
        return NodeStatus.DRAINING
    if node.ctl.cordoned:
        return NodeStatus.CORDONED
    return NodeStatus.READY
