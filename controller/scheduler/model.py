"""Records the scheduler reads and returns.

Everything here is an immutable snapshot: the controller builds `NodeView`s from its
observed state and a `PlacementRequest` from a service spec, calls `place`, and applies
the returned `Plan` at the edge (CAS writes of assignment keys).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from drover.shared.constraints import LABEL_PREFIX, parse_spread
from drover.shared.constraints import NODE_NAME as SPREAD_NODE_NAME
from drover.shared.limits import MAX_ASSIGNMENT_BYTES

__all__ = [
    "LABEL_PREFIX",
    "SPREAD_NODE_NAME",
    "NodeView",
    "Placement",
    "PlacementRequest",
    "Plan",
    "load_fraction",
    "spread_domain",
    "validate_spread",
]


def validate_spread(spread: str | None) -> None:
    """Raise ValueError unless `spread` is None or a spread key of the shared grammar."""
    if spread is not None:
        parse_spread(spread)


def spread_domain(spread: str | None, name: str, labels: Mapping[str, str]) -> str:
    """The spread domain a node belongs to; nodes lacking the label share the domain ""."""
    if spread is None:
        return ""
    if spread == SPREAD_NODE_NAME:
        return name
    return labels.get(spread[len(LABEL_PREFIX) :], "")


@dataclass(frozen=True)
class NodeView:
    """A snapshot of one node, built by the controller."""

    name: str
    labels: Mapping[str, str]
    cpu_capacity: float
    mem_capacity: int
    cpu_allocated: float
    mem_allocated: int
    schedulable: bool  # False when cordoned, draining or lost
    service_counts: Mapping[str, int] = field(default_factory=dict)  # replicas per service on the node
    # The node's assignment is one NATS message: its estimated bytes, their bound, and the service revisions
    # it holds (a revision's spec is stored once per node, so only its first replica there pays for it).
    assign_bytes: int = 0
    assign_capacity: int = MAX_ASSIGNMENT_BYTES
    revisions: frozenset[tuple[str, int]] = frozenset()

    def load(self) -> float:
        """Current allocation: the max of the cpu and memory fractions (0 for zero capacity)."""
        return load_fraction(self.cpu_allocated, self.cpu_capacity, self.mem_allocated, self.mem_capacity)


def load_fraction(cpu_alloc: float, cpu_cap: float, mem_alloc: float, mem_cap: float) -> float:
    """max(cpu fraction, memory fraction); a zero capacity counts as fully used iff something is on it."""
    cpu_frac = cpu_alloc / cpu_cap if cpu_cap > 0 else (0.0 if cpu_alloc <= 0 else math.inf)
    mem_frac = mem_alloc / mem_cap if mem_cap > 0 else (0.0 if mem_alloc <= 0 else math.inf)
    return cpu_frac if cpu_frac >= mem_frac else mem_frac


@dataclass(frozen=True)
class PlacementRequest:
    """Place `count` replicas of `service`, each needing `cpu` cores and `memory` bytes."""

    service: str
    count: int
    cpu: float
    memory: int
    constraints: tuple[str, ...] = ()  # "node.name == n1", "node.labels.zone != b" ("=" means "==")
    spread: str | None = None  # "node.labels.zone" or "node.name"
    avoid_nodes: frozenset[str] = frozenset()  # e.g. the node a replica is leaving (drain)
    # Assignment bytes: a replica's reference, plus its revision's spec on a node that lacks that revision.
    revision: int = 0
    revision_bytes: int = 0
    replica_bytes: int = 0

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"count {self.count}: must be >= 0")
        if not (self.cpu >= 0 and math.isfinite(self.cpu)):
            raise ValueError(f"cpu {self.cpu}: must be a finite number >= 0")
        if self.memory < 0:
            raise ValueError(f"memory {self.memory}: must be >= 0")
        validate_spread(self.spread)


@dataclass(frozen=True)
class Placement:
    """Replica number `index` (0 <= index < count) goes to `node`."""

    node: str
    index: int


@dataclass(frozen=True)
class Plan:
    """The outcome of one request.

    `reasons` maps a filter's reason ("unschedulable", "avoided", "constraint <text>",
    "insufficient cpu", "insufficient memory", "assignment over max_payload") to how many nodes could not take one more
    replica for that reason (the first failing filter per node) once planning ended.
    """

    placements: tuple[Placement, ...]
    unplaced: int
    reasons: Mapping[str, int]

    def counts_by_node(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.placements:
            out[p.node] = out.get(p.node, 0) + 1
        return out
