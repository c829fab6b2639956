"""What a reconcile pass looks at: the services and nodes marked dirty since the last pass, not the whole cluster.

Level-triggered, but incremental. Every change the controller takes in marks what it concerns (``Dirty``): a
service record (its name), a node's registration, control or status (the node), a container's reported
status (its service), an assignment (the services whose replicas on that node changed). A pass plans only
``Scope`` = the marked services and nodes; ``expand`` adds what a node change can concern (the services with
replicas on it, and every ``mode: global`` service, whose eligible nodes it may change). A service stays in
scope while it is not at rest (``unsettled``: the pass changed something for it, it cannot be placed, it
failed, or time alone can change its plan: a rollout under way, a job, a replica leaving a draining node), so
timers (progress deadlines, min_ready, job schedules) are seen without anything being marked. A full pass
(``Dirty.mark_all``) runs every ``full resync`` as a safety net, and after anything that may have been missed
(a new term, a disruption, a failed pass).

The pure plan with a scope equals the full plan restricted to it whenever the services outside the scope are
at rest (``tests/unit/controller/test_scope.py`` checks it on generated clusters).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from drover.shared import assignsize
from drover.shared.models import AssignedContainer, Assignment, ServiceRecord

if TYPE_CHECKING:  # (reconcile imports this module: the plan type is only named here)
    from drover.controller.reconcile import ClusterPlan
    from drover.controller.snapshot import Snapshot

# service -> node -> replicas of that service on the node (per the stored assignments)
Placements = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Allocation:
    """What a node's assigned replicas take (per the stored assignment): the scheduler's view of the node
    without a pass over every replica of the cluster each time something must be placed."""

    cpu: float = 0.0
    memory: int = 0
    counts: Mapping[str, int] = field(default_factory=dict)  # replicas per service
    # The assignment's bytes but its envelope (``shared.assignsize``) and the service revisions it holds.
    assign_bytes: int = 0
    revisions: frozenset[tuple[str, int]] = frozenset()


def allocation_of(containers: Sequence[AssignedContainer]) -> Allocation:
    cpu = 0.0
    mem = 0
    counts: dict[str, int] = defaultdict(int)
    for c in containers:
        cpu += c.spec.resources.cpu
        mem += c.spec.resources.memory
        counts[c.service] += 1
    size, held = assignsize.services_bytes((c.service, c.revision, c.spec, c.id) for c in containers)
    return Allocation(cpu, mem, dict(counts), size, held)


@dataclass(frozen=True)
class Scope:
    services: frozenset[str] = frozenset()
    nodes: frozenset[str] = frozenset()


@dataclass
class Dirty:
    """What changed since the last pass (marked on the event loop, taken by the reconcile loop)."""

    services: set[str] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)
    all: bool = True  # a (re)started controller plans everything first

    def mark_service(self, name: str) -> None:
        self.services.add(name)

    def mark_services(self, names: Iterable[str]) -> None:
        self.services.update(names)

    def mark_node(self, name: str) -> None:
        self.nodes.add(name)

    def mark_all(self) -> None:
        self.all = True

    def __bool__(self) -> bool:
        return self.all or bool(self.services) or bool(self.nodes)

    def take(self) -> Scope | None:
        """The scope of the next pass (None: everything), and a clean slate."""
        scope = None if self.all else Scope(frozenset(self.services), frozenset(self.nodes))
        self.services, self.nodes, self.all = set(), set(), False
        return scope

    def put_back(self, scope: Scope | None) -> None:
        """A pass that did not complete: what it was to look at is looked at by the next one."""
        if scope is None:
            self.all = True
        else:
            self.services |= scope.services
            self.nodes |= scope.nodes


def place_counts(containers: Sequence[AssignedContainer]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for c in containers:
        counts[c.service] += 1
    return counts


def changed_services(old: Sequence[AssignedContainer], new: Sequence[AssignedContainer]) -> set[str]:
    """Services whose replicas differ between two assignments of one node (added, removed or changed)."""
    before = {c.id: c for c in old}
    out: set[str] = set()
    for c in new:
        b = before.pop(c.id, None)
        if b is None or (b is not c and b != c):
            out.add(c.service)
            if b is not None:
                out.add(b.service)
    out.update(c.service for c in before.values())
    return out


def placements_of(assignments: Mapping[str, Assignment]) -> Placements:
    """The index from the assignments themselves (what ``ClusterState`` keeps up to date incrementally)."""
    out: Placements = defaultdict(dict)
    for node, a in assignments.items():
        for service, n in place_counts(a.containers).items():
            out[service][node] = n
    return dict(out)


def expand(scope: Scope, snap: Snapshot) -> frozenset[str]:
    """The services a pass over ``scope`` must plan: the marked ones, those with replicas on a marked node (it
    may be lost, draining, back, or have new labels), and, when a node is marked, every global service."""
    services = set(scope.services)
    for node in scope.nodes:
        a = snap.assignments.get(node)
        if a is not None:
            services.update(c.service for c in a.containers)
    if scope.nodes:
        services.update(n for n, s in snap.services.items() if not s.deleted and s.spec.mode == "global")
    return frozenset(services)


def unsettled(snap: Snapshot, plan: ClusterPlan, planned: Iterable[str]) -> set[str]:
    """Of the services a pass planned, those that are not at rest: the next pass must look at them again even
    if nothing is marked (what they wait for is time, or the outcome of this pass's own writes)."""
    out: set[str] = set(plan.unplaced) | set(plan.failed) | set(plan.verdicts) | set(plan.jobs)
    out.update(e.service for e in plan.events if e.service)
    for node, containers in plan.assignments.items():
        old = snap.assignments[node].containers if node in snap.assignments else []
        out |= changed_services(old, containers)
    for name in planned:
        svc = snap.services.get(name)
        if svc is not None and _time_dependent(svc):
            out.add(name)
    for name, n in snap.nodes.items():  # replicas leaving a draining node wait for their replacements' min_ready
        if n.ctl.draining and name in snap.assignments:
            out.update(c.service for c in snap.assignments[name].containers)
    return out


def difference(scoped: ClusterPlan, full: ClusterPlan) -> str | None:
    """Where a scoped plan differs from the full plan of the same snapshot and randomness (None: nowhere).
    What the controller checks every pass when ``DROVER_VERIFY_SCOPE`` names a file (a development aid)."""
    for what in ("disrupted", "unplaced", "failed", "verdicts", "jobs", "events"):
        if getattr(scoped, what) != getattr(full, what):
            return f"{what}: scoped {getattr(scoped, what)!r} != full {getattr(full, what)!r}"
    for node in sorted(set(scoped.assignments) | set(full.assignments)):
        a, b = scoped.assignments.get(node), full.assignments.get(node)
        if a != b:
            return f"assignment of {node}: scoped {_ids(a)} != full {_ids(b)}"
    return None


def _ids(containers: Sequence[AssignedContainer] | None) -> list[tuple[str, str]]:
    return [(c.service, c.id) for c in containers or []]


def _time_dependent(svc: ServiceRecord) -> bool:
    """A plan that can change with the clock alone: a rollout under way (progress deadline, min_ready), a job
    (its runs, backoff and schedule)."""
    if svc.deleted:
        return False
    return svc.rollout_state == "progressing" or bool(svc.spec.schedule)
