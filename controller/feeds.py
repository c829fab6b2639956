"""The controller's desired state, fed from the KV buckets through one ``Informer`` per bucket.

Damaged (undecodable) records are reported once each as a ``record-damaged`` event and then: a service record
is ignored (its last good value is kept; without one its replicas are held as they are), a node registration
or node control is ignored (last good value kept), an assignment is queued for repair by the leader
(``damaged_assignments``; the reconcile loop rewrites it from its view).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nats.js.kv import KeyValue

from drover.controller.state import ClusterState
from drover.shared.bus import ClusterStore
from drover.shared.informer import Damage, Informer
from drover.shared.models import Assignment, NodeControl, NodeRegistration, ServiceRecord

# report(kind, bucket, key, message, dedupe_id): an event, stored once per dedupe id across controllers.
Report = Callable[[str, str, str, str, str], None]


class StateFeeds:
    def __init__(
        self,
        store: ClusterStore,
        state: ClusterState,
        *,
        report: Report,
        kick: Callable[[], None],
        reconnects: Callable[[], int],
        clock: Callable[[], float],
        resync: float = 30.0,
    ) -> None:
        self.state = state
        self.report = report
        self.kick = kick
        self.clock = clock
        self.damaged_assignments: dict[str, int] = {}  # node -> damaged revision, until repaired or replaced

        def make(
            name: str, kv: KeyValue, decode: Callable[[bytes], Any], on_change: Callable[[str, Any, int], None]
        ) -> Informer[Any]:
            return Informer(
                name, kv, decode, on_change=on_change, on_damaged=lambda d: self._damaged(name, d),
                reconnects=reconnects, resync=resync,
            )

        self.services = make("services", store.services, ServiceRecord.from_wire, self._service)
        self.assignments = make("assignments", store.assignments, Assignment.from_wire, self._assignment)
        self.nodes = make("nodes", store.nodes, NodeRegistration.from_wire, self._node)
        self.nodectl = make("nodectl", store.nodectl, NodeControl.from_wire, self._nodectl)
        self.all: list[Informer[Any]] = [self.services, self.assignments, self.nodes, self.nodectl]

    # --- changes ----------------------------------------------------------------------------------------------
    def _service(self, key: str, rec: object, rev: int) -> None:
        assert rec is None or isinstance(rec, ServiceRecord)
        self.state.held_services.discard(key)
        self.state.set_service(key, rec, rev)
        self.kick()

    def _assignment(self, key: str, a: object, rev: int) -> None:
        assert a is None or isinstance(a, Assignment)
        if self.damaged_assignments.get(key, -1) <= rev:
            self.damaged_assignments.pop(key, None)
        self.state.set_assignment(key, a, rev)
        self.kick()

    def _node(self, key: str, reg: object, rev: int) -> None:
        assert reg is None or isinstance(reg, NodeRegistration)
        if reg is not None and reg.name != key:
            # The key is what the server let this agent's credentials write ($KV.<nodes>.<key>); a body naming
            # another node must not speak for it.
            reg = reg.model_copy(update={"name": key})
        self.state.set_registration(reg, key, self.clock())
        self.kick()

    def _nodectl(self, key: str, ctl: object, rev: int) -> None:
        assert ctl is None or isinstance(ctl, NodeControl)
        self.state.set_control(key, ctl)
        self.kick()

    # --- damage -----------------------------------------------------------------------------------------------
    def _damaged(self, bucket: str, d: Damage) -> None:
        if bucket == "services":
            if d.key not in self.state.services:
                self.state.held_services.add(d.key)
            action = "ignored (its replicas are kept as they are until the record is readable or re-applied)"
        elif bucket == "assignments":
            self.damaged_assignments[d.key] = d.revision
            action = "the leading controller rewrites it from its view of the node"
        else:
            action = "ignored (the last readable value is kept)"
        message = f"{bucket} record {d.key!r} (revision {d.revision}) cannot be decoded: {d.error}; {action}"
        self.report("record-damaged", bucket, d.key, message, f"damaged:{bucket}:{d.key}:{d.revision}")
        self.kick()

    def loaded(self) -> bool:
        return all(i.ready.is_set() for i in self.all)
