"""The controller's view of the cluster at one instant: plain data handed to the pure decision functions."""

from __future__ import annotations

from dataclasses import dataclass, field

from drover.controller.scope import Allocation
from drover.controller.tally import StatusTally
from drover.shared.limits import MAX_ASSIGNMENT_BYTES
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
    # Silence is counted from here at the earliest: when this controller first knew the node, and again after
    # each of its own reconnects or loop stalls (see ``freshness``), so stale timestamps never make a node lost.
    seen_since: float
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
    # Services whose stored record is damaged (undecodable) and that have no good value: their replicas are
    # kept as they are, neither removed as orphans nor replaced.
    held_services: frozenset[str] = frozenset()
    # When the current control-plane disruption (most nodes silent at once) began; None when there is none.
    disrupted_since: float | None = None
    # service -> node -> its replicas there, per ``assignments`` (kept by ``ClusterState``); None: a scoped
    # plan derives it from ``assignments`` (tests).
    placements: dict[str, dict[str, int]] | None = None
    allocations: dict[str, Allocation] | None = None  # node -> what its assignment takes (None: computed)
    assign_limit: int = MAX_ASSIGNMENT_BYTES  # a node's assignment bytes at most (the server's max_payload less room)
    # Replica counts per service kept by ``ClusterState`` (the views' shortcut; None: the views walk the replicas).
    # Live, not copied: only readers on the event loop get it (a detached snapshot has none).
    tally: StatusTally | None = None


def silent_for(node: NodeState, now: float) -> float:
    """Seconds of silence that count: since the last heartbeat, or since ``seen_since`` if that is later."""
    last = node.last_heartbeat if node.last_heartbeat is not None else node.seen_since
    return now - max(last, node.seen_since)


def node_status(node: NodeState, now: float, grace: float) -> NodeStatus:
    """lost when no heartbeat for ``grace`` seconds (of silence that counts: see ``silent_for``)."""
    if silent_for(node, now) > grace:
        return NodeStatus.LOST
    if node.ctl.draining:
        return NodeStatus.DRAINING
    if node.ctl.cordoned:
        return NodeStatus.CORDONED
    return NodeStatus.READY
