"""The controller's in-memory cache of desired state (from KV watches) and observed state (from heartbeats).

Everything here is soft: a restarted controller rebuilds it from the KV buckets and the next heartbeats.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from drover.controller.eventring import EventRing
from drover.controller.scope import Allocation, Dirty, Placements, allocation_of, changed_services, place_counts
from drover.controller.snapshot import NodeState, Snapshot, silent_for
from drover.controller.tally import StatusTally
from drover.shared.limits import MAX_ASSIGNMENT_BYTES
from drover.shared.models import (
    AssignedContainer,
    Assignment,
    ContainerStatus,
    Heartbeat,
    NodeControl,
    NodeRegistration,
    ServiceRecord,
)

T = TypeVar("T")

# Heartbeats of nodes with no registration yet are kept (one may simply arrive first), but only this many,
# and each only this long without a registration: names nobody registered cannot grow the controller.
MAX_UNREGISTERED = 256
UNREGISTERED_TTL = 60.0


@dataclass
class Versioned(Generic[T]):
    value: T
    rev: int


@dataclass
class ClusterState:
    started: float
    node_grace: float
    services: dict[str, Versioned[ServiceRecord]] = field(default_factory=dict)
    assignments: dict[str, Versioned[Assignment]] = field(default_factory=dict)
    nodes: dict[str, NodeState] = field(default_factory=dict)
    controls: dict[str, NodeControl] = field(default_factory=dict)
    ready_since: dict[str, float] = field(default_factory=dict)
    service_rps: dict[str, dict[str, float]] = field(default_factory=dict)  # node -> service -> new conns/s
    events: EventRing = field(default_factory=lambda: EventRing(maxlen=5000))
    term: int = 1
    unregistered: set[str] = field(default_factory=set)  # nodes known from heartbeats only
    held_services: set[str] = field(default_factory=set)  # damaged service records without a good value
    clock_restarted: float = 0.0  # when the silence clock last restarted (a stall or reconnect of this controller)
    # What changed since the last reconcile pass (controller/scope.py): every setter below marks what it touched.
    dirty: Dirty = field(default_factory=Dirty)
    placements: Placements = field(default_factory=dict)  # service -> node -> replicas there (from assignments)
    allocations: dict[str, Allocation] = field(default_factory=dict)  # node -> what its assignment takes
    # How big a node's assignment may grow: what the connected NATS server takes in one message, less room.
    assign_limit: int = MAX_ASSIGNMENT_BYTES
    # Replica counts per service (running, ready, on each revision), recounted per node as it changes: what
    # `get services` shows without a walk over every replica (controller/tally.py).
    tally: StatusTally = field(init=False)

    def __post_init__(self) -> None:
        self.tally = StatusTally(self._replicas_of)

    def _replicas_of(self, node: str) -> tuple[list[AssignedContainer], dict[str, ContainerStatus]]:
        """A node's assigned replicas and their reported statuses, as they are now (what the tally counts)."""
        a = self.assignments.get(node)
        ns = self.nodes.get(node)
        return (a.value.containers if a is not None else []), (ns.observed if ns is not None else {})

    # --- desired state, from KV -------------------------------------------------------------------------
    def set_service(self, name: str, rec: ServiceRecord | None, rev: int) -> None:
        cur = self.services.get(name)
        if cur is not None and cur.rev > rev:
            return
        self.dirty.mark_service(name)
        if rec is None:
            self.services.pop(name, None)
        else:
            self.services[name] = Versioned(rec, rev)

    def set_assignment(self, node: str, a: Assignment | None, rev: int) -> None:
        cur = self.assignments.get(node)
        if cur is not None and cur.rev > rev:
            return
        # (a write of this controller comes back from the watch: equal, it marks nothing)
        old = cur.value.containers if cur is not None else []
        new = a.containers if a is not None else []
        self.dirty.mark_services(changed_services(old, new))
        for service in place_counts(old):
            nodes = self.placements.get(service)
            if nodes is not None:
                nodes.pop(node, None)
                if not nodes:
                    del self.placements[service]
        for service, n in place_counts(new).items():
            self.placements.setdefault(service, {})[node] = n
        if a is None:
            self.assignments.pop(node, None)
            self.allocations.pop(node, None)
        else:
            self.assignments[node] = Versioned(a, rev)
            self.allocations[node] = allocation_of(a.containers)
        if a is None or cur is None or a.containers != cur.value.containers:
            self._tally_changed(node)

    def _tally_changed(self, node: str) -> None:
        self.tally.mark(node)

    def set_registration(self, reg: NodeRegistration | None, name: str, now: float) -> None:
        self.dirty.mark_node(name)
        self.unregistered.discard(name)
        if reg is None:
            self.nodes.pop(name, None)
            self.service_rps.pop(name, None)
            self._tally_changed(name)
            return
        node = self.nodes.get(name)
        if node is None:
            self.nodes[name] = NodeState(
                reg=reg, ctl=self.controls.get(name, NodeControl()), last_heartbeat=None, seen_since=now
            )
        else:
            node.reg = reg

    def set_control(self, name: str, ctl: NodeControl | None) -> None:
        ctl = ctl or NodeControl()
        self.dirty.mark_node(name)
        self.controls[name] = ctl
        if name in self.nodes:
            self.nodes[name].ctl = ctl

    def restart_silence_clock(self, now: float) -> None:
        """Count every node's silence from ``now`` (after a reconnect or a stall of this controller)."""
        self.clock_restarted = now
        for node in self.nodes.values():
            node.seen_since = max(node.seen_since, now)

    # --- observed state, from heartbeats ----------------------------------------------------------------
    def on_heartbeat(self, hb: Heartbeat, now: float) -> bool:
        """Record a heartbeat; True when something that matters to reconciliation changed."""
        node = self.nodes.get(hb.node)
        if node is None:
            # A heartbeat before its registration reached us: keep it with a minimal registration, within
            # bounds (forged or stray names must not grow this cache without limit).
            if len(self.unregistered) >= MAX_UNREGISTERED:
                self.expire_unregistered(now)
                if len(self.unregistered) >= MAX_UNREGISTERED:
                    return False
            self.unregistered.add(hb.node)
            node = NodeState(
                reg=NodeRegistration(name=hb.node),
                ctl=self.controls.get(hb.node, NodeControl()),
                last_heartbeat=None,
                seen_since=now,
            )
            self.nodes[hb.node] = node
        was_lost = node.last_heartbeat is None or silent_for(node, now) > self.node_grace
        # ``now`` is the heartbeat's send time (``freshness.heartbeat_time``): parts may arrive out of order
        node.last_heartbeat = max(now, node.last_heartbeat or now)
        node.boot_id = hb.boot_id
        node.generation_seen = hb.generation
        self.service_rps[hb.node] = dict(hb.service_rps)
        new = {c.id: c for c in hb.containers}
        services = _changed(node.observed, new)
        changed = was_lost or bool(services)
        if was_lost:
            self.dirty.mark_node(hb.node)
        if services:
            # A replica's service, by its report or by the assignment it was given (a report may lack it).
            a = self.assignments.get(hb.node)
            ids = services.pop("", set())
            if ids and a is not None:
                services.update({c.service: set() for c in a.value.containers if c.id in ids})
            self.dirty.mark_services(services)
        for rid, c in new.items():
            if c.ready:
                self.ready_since.setdefault(rid, now)
            else:
                self.ready_since.pop(rid, None)
        for rid in set(node.observed) - set(new):
            self.ready_since.pop(rid, None)
        node.observed = new
        if services:
            self._tally_changed(hb.node)
        return changed

    def expire_unregistered(self, now: float) -> list[str]:
        """Forget nodes that never registered and sent no heartbeat for ``UNREGISTERED_TTL``."""
        gone = [
            n for n in self.unregistered
            if (hb := self.nodes[n].last_heartbeat if n in self.nodes else None) is None or now - hb > UNREGISTERED_TTL
        ]
        for n in gone:
            self.dirty.mark_node(n)
            self.unregistered.discard(n)
            self.nodes.pop(n, None)
            self.service_rps.pop(n, None)
            self._tally_changed(n)
        return gone

    def touch(self, name: str, now: float) -> bool:
        """A heartbeat that repeats the node's last one: only its time counts. False when that is not enough
        (an unknown node, or one that was lost: ``on_heartbeat`` records the change)."""
        node = self.nodes.get(name)
        if node is None or node.last_heartbeat is None or now - node.last_heartbeat > self.node_grace:
            return False
        node.last_heartbeat = max(now, node.last_heartbeat)
        return True

    def snapshot(self, now: float, *, detached: bool = False) -> Snapshot:
        """``detached``: a copy that later heartbeats and watch entries do not change, for planning in a
        worker thread while the event loop goes on updating this state (records are replaced, never changed
        in place, so copying what holds them is enough). Readers on the event loop need no copy."""
        return Snapshot(
            now=now,
            node_grace=self.node_grace,
            services={n: v.value for n, v in self.services.items()},
            nodes={n: copy.copy(s) for n, s in self.nodes.items()} if detached else self.nodes,
            assignments={n: v.value for n, v in self.assignments.items()},
            term=self.term,
            ready_since=dict(self.ready_since) if detached else self.ready_since,
            held_services=frozenset(self.held_services),
            placements={s: dict(n) for s, n in self.placements.items()} if detached else self.placements,
            allocations=dict(self.allocations),
            assign_limit=self.assign_limit,
            tally=None if detached else self.tally,
        )


def _digest(c: ContainerStatus) -> tuple[object, ...]:
    return (c.state, c.ready, c.revision, c.restarts, c.host_port, c.service)


def _changed(old: dict[str, ContainerStatus], new: dict[str, ContainerStatus]) -> dict[str, set[str]]:
    """Services whose replicas' reported status changed in a way reconciliation looks at (service -> ids;
    a status that names no service is under "")."""
    out: dict[str, set[str]] = {}
    for rid, c in new.items():
        b = old.get(rid)
        if b is None or (b is not c and _digest(b) != _digest(c)):
            out.setdefault(c.service, set()).add(rid)
            if b is not None and b.service != c.service:
                out.setdefault(b.service, set()).add(rid)
    for rid, b in old.items():
        if rid not in new:
            out.setdefault(b.service, set()).add(rid)
    return out
