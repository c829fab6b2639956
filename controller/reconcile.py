"""Pure cluster reconciliation: from a Snapshot, decide the new per-node assignments.

``plan(snapshot, rng)`` drops replicas of lost nodes and deleted services, asks ``service_step`` what each
service needs, places new replicas with the scheduler and returns the node assignments that change plus the
events worth telling. No I/O, no clock (``snapshot.now``), randomness only from ``rng``.

``plan(snapshot, rng, scope)`` does the same for the services and nodes of ``scope`` only (``controller/
scope.py``): the same plan as a full pass whenever everything outside the scope is at rest, at a cost that
grows with the scope (plus the cluster's node count, and its replicas when something must be placed).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drover.controller.freshness import DISRUPTION_HOLD_GRACES, evictions_held
from drover.controller.jobs import finished, job_decision, stopped
from drover.controller.rollout import ReplicaView, Verdict, judge_rollout, service_step
from drover.controller.scheduler import NodeView, PlacementRequest, Placer
from drover.controller.scope import Allocation, Scope, allocation_of, expand, placements_of
from drover.controller.snapshot import Snapshot, node_status
from drover.controller.workloads import eligible_nodes, global_homes, job_replica_id, sticky_homes
from drover.shared import assignsize
from drover.shared.constraints import pin_to
from drover.shared.manifest import ServiceSpec
from drover.shared.models import AssignedContainer, ContainerStatus, NodeStatus, ServiceRecord
from drover.shared.workloads import sticky


@dataclass(frozen=True)
class PlannedEvent:
    kind: str
    service: str = ""
    node: str = ""
    container: str = ""
    message: str = ""


@dataclass
class ClusterPlan:
    assignments: dict[str, list[AssignedContainer]] = field(default_factory=dict)  # only changed nodes
    events: list[PlannedEvent] = field(default_factory=list)
    unplaced: dict[str, str] = field(default_factory=dict)  # service -> why (level, not an event)
    failed: dict[str, str] = field(default_factory=dict)  # service -> the error that made this pass skip it
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # service -> rollout change to record
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # job service -> record fields to write
    disrupted: bool = False  # most nodes silent at once: a control-plane disruption, nothing was planned
    planned: frozenset[str] | None = None  # the services a scoped pass planned (None: all)

    @property
    def empty(self) -> bool:
        return not self.assignments and not self.verdicts and not self.jobs


EMPTY = Allocation()


def new_replica_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(40):010x}"


def _resources(spec: ServiceSpec) -> tuple[float, int]:
    """What a replica allocates on its node (a typed spec: validated when it was decoded)."""
    return spec.resources.cpu, spec.resources.memory


def in_place_restarts(c: AssignedContainer, observed: ContainerStatus | None) -> int:
    """Restarts of replica ``c`` on its current placement. The agent reports ``c.restarts`` (carried from
    earlier placements, node losses included) plus its own in-place restarts; only the latter are evidence that
    the revision crashes, so rollout judgement must not see the carried part."""
    return max(0, observed.restarts - c.restarts) if observed else 0


def _why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def plan(snap: Snapshot, rng: random.Random, scope: Scope | None = None) -> ClusterPlan:
    out = ClusterPlan()
    status = {name: node_status(n, snap.now, snap.node_grace) for name, n in snap.nodes.items()}
    silent = sum(st is NodeStatus.LOST for st in status.values())
    if evictions_held(silent, len(status), snap.disrupted_since, snap.now, DISRUPTION_HOLD_GRACES * snap.node_grace):
        # Most nodes silent together: the control plane is cut off, not the nodes. Evict and move nothing
        # (a rollout would otherwise see its replicas vanish and replace them all at once).
        out.disrupted = True
        return out
    # Working copy of every node's containers; changed nodes are tracked.
    # Every node's containers as this pass changes them: a changed node gets a new list, the snapshot's own
    # lists are never changed in place (so they need no copy: 5,000 copies per pass at the largest size).
    work: dict[str, list[AssignedContainer]] = {n: a.containers for n, a in snap.assignments.items()}
    changed: set[str] = set()
    carried_restarts: dict[str, list[int]] = defaultdict(list)  # service -> restarts of replaced replicas

    def remove(node: str, rid: str) -> None:
        work[node] = [c for c in work[node] if c.id != rid]
        changed.add(node)

    respecced: set[str] = set()  # nodes where a replica's spec changed (a failed job's: restart never)

    def respec(change: Callable[[AssignedContainer], AssignedContainer]) -> Callable[[str, str], None]:
        def apply(node: str, rid: str) -> None:
            new = [change(c) if c.id == rid else c for c in work[node]]
            if new != work[node]:
                work[node] = new
                changed.add(node)
                respecced.add(node)

        return apply

    stop_retrying, finish = respec(stopped), respec(finished)

    # What this pass looks at: every service and node, or those of the scope (and where their replicas are).
    if scope is None:
        planned: frozenset[str] | None = None
        scan = sorted(work)
    else:
        planned = out.planned = expand(scope, snap)
        index = snap.placements if snap.placements is not None else placements_of(snap.assignments)
        scan = sorted({n for n in scope.nodes if n in work}.union(*(index.get(s, {}).keys() for s in planned)))

    # 1. Replicas of deleted services go; replicas of lost (or unknown) nodes are replaced elsewhere.
    # (with no deleted service among those planned, there is nothing to do here on a live node: skipped)
    present = planned if planned is not None else snap.placements  # (None: not known without the scan)
    gone = present is None or any(
        (svc := snap.services.get(s)) is None or svc.deleted for s in present if s not in snap.held_services
    )
    for node in scan:
        st = status.get(node, NodeStatus.LOST)
        if not gone and st is not NodeStatus.LOST:
            continue
        for c in work[node]:
            if planned is not None and c.service not in planned:
                continue
            svc = snap.services.get(c.service)
            if c.service in snap.held_services:
                continue  # its record is damaged: keep its replicas as they are until it is readable again
            if svc is None or svc.deleted:
                remove(node, c.id)
            elif st is NodeStatus.LOST and c.finished:
                remove(node, c.id)  # a job run that is over: nothing to replace (it never runs again)
            elif st is NodeStatus.LOST:
                observed = snap.nodes[node].observed.get(c.id) if node in snap.nodes else None
                # For display: every restart so far, in place or by replacement, plus this replacement. The
                # agent's count already includes ``c.restarts``, so only its in-place part is added.
                carried_restarts[c.service].append(c.restarts + in_place_restarts(c, observed) + 1)
                remove(node, c.id)
                why = f"node {node} lost: replacing {c.id}"
                if sticky(c.spec):
                    why += f"; its volume data stayed behind on {node}"
                out.events.append(PlannedEvent("rescheduled", c.service, node, c.id, why))

    # 2. What each service needs.
    # (one scan of the nodes holding what is planned, in node order: each node's containers looked at once)
    replicas_of: dict[str, list[tuple[str, AssignedContainer]]] = defaultdict(list)
    for node in scan:
        for c in work[node]:
            if planned is None or c.service in planned:
                replicas_of[c.service].append((node, c))

    creates: list[tuple[ServiceRecord, int, frozenset[str]]] = []
    evictable: dict[str, list[tuple[str, str]]] = {}
    nodes_info = {n: (status[n] is NodeStatus.READY, n, dict(s.reg.labels)) for n, s in snap.nodes.items()}
    for name in sorted(snap.services if planned is None else planned & snap.services.keys()):
        svc = snap.services[name]
        if svc.deleted:
            continue
        try:
            mode = svc.spec.mode
            replicas = replicas_of.get(name, [])
            if mode == "job":
                _job_pass(snap, svc, replicas, out, remove, stop_retrying, finish, creates)
                continue
            if mode == "global":  # one per eligible node: as many replicas as such nodes, none elsewhere
                eligible = set(eligible_nodes(nodes_info, svc.spec))
                for node, c in replicas:
                    if node not in eligible:
                        remove(node, c.id)
                replicas = [(node, c) for node, c in replicas if node in eligible]
                svc = svc.model_copy(update={"replicas": len(eligible)})
            _service_pass(snap, svc, status, replicas, out, remove, creates, evictable)
        except Exception as exc:  # one service's bad record must never stop the others (reported, skipped)
            out.failed[name] = f"rollout step failed: {_why(exc)}"

    # 3. Place what must be created, on a view of the nodes that includes this pass's removals.
    if creates:
        views_by_node = _node_views(snap, status, work, changed)
        # One placer for the pass: each service placed sees the replicas placed before it, and the nodes are
        # taken in once (5,000 of them: once per service placed was most of a pass that replaces a lost node).
        placer = Placer(views_by_node)
        schedulable = {v.name for v in views_by_node if v.schedulable}
        for svc, count, avoid in creates:
            try:
                # Replicas with volumes go back to the nodes that hold their data (sticky), the rest anywhere.
                homes = sticky_homes(svc.name, svc.revision, snap.assignments, work, schedulable, count) \
                    if sticky(svc.spec) else []
                rest = count - len(homes)
                if svc.spec.mode == "global":
                    targets = eligible_nodes(nodes_info, svc.spec)
                    homes, rest = global_homes(svc.name, svc.revision, targets, work, count), 0
                for home, n in [*Counter(homes).items(), (None, rest)]:
                    if n > 0:
                        _place_service(svc, n, avoid, placer, work, changed, carried_restarts, evictable, out,
                                       remove, rng, home=home)
            except Exception as exc:  # a placement that raises skips this service only
                out.failed[svc.name] = f"placement failed: {_why(exc)}"

    for node in changed:
        before = [c.id for c in snap.assignments[node].containers] if node in snap.assignments else []
        if [c.id for c in work[node]] != before or node in respecced:
            out.assignments[node] = work[node]
    return out


def _service_pass(
    snap: Snapshot,
    svc: ServiceRecord,
    status: dict[str, NodeStatus],
    replicas: list[tuple[str, AssignedContainer]],
    out: ClusterPlan,
    remove: Callable[[str, str], None],
    creates: list[tuple[ServiceRecord, int, frozenset[str]]],
    evictable: dict[str, list[tuple[str, str]]],
) -> None:
    """Judge one service's rollout and decide its step. Nothing is changed before every decision is made, so
    a service that raises half-way leaves its replicas (and the plan) as they were."""
    name = svc.name
    views = []
    # (a full pass builds a view of every replica of the cluster: the lookups are hoisted out of the loop)
    nodes, ready_since, drains = snap.nodes, snap.ready_since, NodeStatus.DRAINING
    for node, c in replicas:
        ns = nodes.get(node)
        obs = ns.observed.get(c.id) if ns is not None else None
        leaving = status.get(node) is drains
        if obs is None:
            views.append(ReplicaView(c.id, node, c.revision, False, None, leaving, "pending", 0))
            continue
        ready = obs.ready and obs.revision == c.revision
        views.append(
            ReplicaView(
                c.id, node, c.revision, ready,
                ready_since.get(c.id, obs.started_at or 0.0) if ready else None,
                leaving,
                str(obs.state),
                # Crash evidence only: a replacement after a node loss is a relocation, not a crash.
                max(0, obs.restarts - c.restarts),  # (in_place_restarts)
            )
        )
    verdict = judge_rollout(
        revision=svc.revision,
        replicas=svc.replicas,
        spec=svc.spec,
        state=svc.rollout_state,
        paused=svc.paused,
        last_good=svc.last_good,
        progress=svc.rollout_progress,
        progress_at=svc.rollout_progress_at or svc.rollout_started,
        current=views,
        now=snap.now,
    )
    frozen = svc.paused or svc.rollout_state == "failed"
    if frozen and any(v.revision != svc.revision for v in views):
        if verdict is not None:
            out.verdicts[name] = verdict
        return  # a paused or failed rollout keeps its mix of revisions as it is
    step = service_step(
        replicas=svc.replicas, revision=svc.revision, update=svc.spec.update, current=views, now=snap.now
    )
    where = {v.id: v.node for v in views}
    removals = [(where[rid], rid) for rid in step.remove]
    evict = [(rid, where[rid]) for rid in step.evict_if_unplaced]
    # Every decision is made: from here on only the plan is changed.
    if verdict is not None:
        out.verdicts[name] = verdict
    for node, rid in removals:
        remove(node, rid)
    if step.create:
        draining = frozenset(v.node for v in views if v.leaving)
        creates.append((svc, step.create, draining))
    if evict:
        evictable[name] = evict


def _place_service(
    svc: ServiceRecord,
    count: int,
    avoid: frozenset[str],
    placer: Placer,
    work: dict[str, list[AssignedContainer]],
    changed: set[str],
    carried_restarts: dict[str, list[int]],
    evictable: dict[str, list[tuple[str, str]]],
    out: ClusterPlan,
    remove: Callable[[str, str], None],
    rng: random.Random,
    home: str | None = None,
) -> None:
    """Place ``count`` new replicas of one service (on node ``home`` only, when given). ``place`` raises (a
    malformed constraint) before anything is changed, so a failing service leaves the plan as it was."""
    cpu, mem = _resources(svc.spec)
    placement = svc.spec.placement
    req = PlacementRequest(
        service=svc.name,
        count=count,
        cpu=cpu,
        memory=mem,
        # the home pin written through the grammar's own normal form: a node name may hold '=' (a KV key can)
        constraints=(*placement.constraints, *((pin_to(home),) if home else ())),
        spread=placement.spread,
        avoid_nodes=avoid,
        revision=svc.revision,
        revision_bytes=assignsize.revision_bytes(svc.name, svc.spec),
        replica_bytes=assignsize.replica_bytes("x" * assignsize.MAX_REPLICA_ID),
    )
    result = placer.place(req, rng=rng)
    carried = carried_restarts.get(svc.name, [])
    added: dict[str, list[AssignedContainer]] = defaultdict(list)
    for p in result.placements:
        rid = job_replica_id(svc.job_run, rng) if svc.spec.mode == "job" else new_replica_id(rng)
        restarts = carried.pop(0) if carried else 0
        added[p.node].append(
            AssignedContainer(id=rid, service=svc.name, revision=svc.revision, spec=svc.spec, restarts=restarts)
        )
        out.events.append(PlannedEvent("scheduled", svc.name, p.node, rid, f"placed on {p.node}"))
    for node, new in added.items():  # new lists: ``work`` may hold the snapshot's own (never changed in place)
        work[node] = [*work.get(node, ()), *new]
        changed.add(node)
    if result.unplaced:
        why = ", ".join(f"{k}: {v}" for k, v in sorted(result.reasons.items())) or "no nodes"
        out.unplaced[svc.name] = f"{result.unplaced} replica(s) cannot be placed ({why})"
        for rid, node in evictable.get(svc.name, []):
            remove(node, rid)


def _job_pass(
    snap: Snapshot,
    svc: ServiceRecord,
    replicas: list[tuple[str, AssignedContainer]],
    out: ClusterPlan,
    remove: Callable[[str, str], None],
    stop_retrying: Callable[[str, str], None],
    finish: Callable[[str, str], None],
    creates: list[tuple[ServiceRecord, int, frozenset[str]]],
) -> None:
    """A job's pass (controller/jobs.py decides; here the plan is changed)."""

    def observed(node: str, rid: str) -> ContainerStatus | None:
        n = snap.nodes.get(node)
        return n.observed.get(rid) if n is not None else None

    d = job_decision(svc, replicas, observed, snap.now)
    for node, rid in d.remove:
        remove(node, rid)
    for node, rid in d.stop_retrying:
        stop_retrying(node, rid)
    for node, rid in d.finish:
        finish(node, rid)
    if d.record:
        out.jobs[svc.name] = d.record
    out.events.extend(PlannedEvent(kind, svc.name, message=msg) for kind, msg in d.events)
    if d.create:
        creates.append((svc.model_copy(update={"job_run": d.run}), d.create, frozenset()))


def _node_views(
    snap: Snapshot, status: dict[str, NodeStatus], work: dict[str, list[AssignedContainer]], changed: set[str]
) -> list[NodeView]:
    """Every node as the scheduler sees it, with this pass's changes so far. A node this pass did not change
    takes what its stored assignment takes (``snap.allocations``, kept by the state), not a sum over it."""
    views = []
    known = snap.allocations or {}
    for name in sorted(snap.nodes):
        n = snap.nodes[name]
        if snap.allocations is not None and name not in changed:
            a = known.get(name, EMPTY)
        else:
            a = allocation_of(work.get(name, []))
        views.append(
            NodeView(
                name=name,
                labels=dict(n.reg.labels),
                cpu_capacity=n.reg.capacity.cpu,
                mem_capacity=n.reg.capacity.memory,
                cpu_allocated=a.cpu,
                mem_allocated=a.memory,
                schedulable=status[name] is NodeStatus.READY,
                service_counts=a.counts,  # (never changed in place: _with_added copies)
                assign_bytes=assignsize.envelope_bytes(name) + a.assign_bytes,
                assign_capacity=snap.assign_limit,
                revisions=a.revisions,
            )
        )
    return views


def allocation(containers: list[AssignedContainer]) -> tuple[float, int]:
    cpu = 0.0
    mem = 0
    for c in containers:
        c_cpu, c_mem = _resources(c.spec)
        cpu += c_cpu
        mem += c_mem
    return cpu, mem
