"""The autoscaling loop: every ``interval`` seconds the leader measures each autoscaled service and writes a new
``replicas`` when the pure decision (``autoscale.desired_replicas``) says so.

Level-triggered and soft: samples come from the latest heartbeats in ``ClusterState`` (each replica's
``cpu_percent`` / ``memory_percent``, each node's ``service_rps``), the decision state lives in memory (a new
leader starts afresh, which holds scale-downs for one ``scale_down_window``), and the write is a
compare-and-set of the service record that gives up when the record changed meanwhile (an apply, a
``drover scale``): the next round decides again from the fresh record. Services whose autoscaling
``drover scale`` turned off (``autoscale_enabled`` False until the next apply) are left alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from drover.controller import views
from drover.controller.autoscale import AutoscaleState, Sample, desired_replicas
from drover.controller.records import update_service
from drover.controller.snapshot import Snapshot, node_status
from drover.shared.manifest import AutoscalePolicy
from drover.shared.models import ContainerState, NodeStatus, ServiceRecord

if TYPE_CHECKING:
    from drover.controller.main import Controller

log = structlog.get_logger("drover.controller.autoscaler")

INTERVAL = 2.0


@dataclass(frozen=True)
class Decision:
    time: float
    current: int
    desired: int
    reason: str


def policy_of(rec: ServiceRecord) -> AutoscalePolicy | None:
    return rec.spec.autoscale


def collect_samples(snap: Snapshot, service: str, rps: Mapping[str, Mapping[str, float]]) -> list[Sample]:
    """One sample per assigned replica of ``service`` (without data when its node is lost or silent about it)
    and one per live node that reported a connection rate for it."""
    out: list[Sample] = []
    live = {
        name for name, node in snap.nodes.items()
        if node_status(node, snap.now, snap.node_grace) is not NodeStatus.LOST
    }
    for node_name, a in snap.assignments.items():
        node = snap.nodes.get(node_name)
        for c in a.containers:
            if c.service != service:
                continue
            st = node.observed.get(c.id) if node is not None and node_name in live else None
            if st is None:
                out.append(Sample(replica=c.id, ready=False))
                continue
            ready = st.ready and st.state is ContainerState.RUNNING
            out.append(Sample(replica=c.id, ready=ready, cpu_percent=st.cpu_percent, memory_percent=st.memory_percent))
    for node_name in sorted(live):
        rate = rps.get(node_name, {}).get(service)
        if rate is not None:
            out.append(Sample(node=node_name, rps=rate))
    return out


class Autoscaler:
    def __init__(self, ctl: Controller, interval: float = INTERVAL) -> None:
        self.ctl = ctl
        self.interval = interval
        self.states: dict[str, AutoscaleState] = {}
        self.decisions: dict[str, Decision] = {}
        self.rounds = 0  # rounds done (as leader or not)

    async def run(self) -> None:
        while True:
            await self.tick(time.time())
            await asyncio.sleep(self.interval)

    async def tick(self, now: float) -> None:
        """One round over every service (only on the leader)."""
        self.rounds += 1
        if not self.ctl.is_leader:
            self.states.clear()
            return
        snap = self.ctl.state.snapshot(now)
        for name, rec in snap.services.items():
            policy = policy_of(rec)
            if policy is None or rec.deleted or not rec.autoscale_enabled:
                self.states.pop(name, None)
                self.ctl.problems.set("autoscale", name, None)
                continue
            try:
                await self._service(snap, rec, policy)
            except Exception as exc:  # one service's trouble never stops the others: reported once, skipped
                why = f"autoscaling failed: {type(exc).__name__}: {exc}"
                log.warning("autoscaling failed", service=name, error=repr(exc))
                if self.ctl.problems.set("autoscale", name, why):
                    await self.ctl.emit("autoscale-failed", service=name, message=why)
            else:
                self.ctl.problems.set("autoscale", name, None)
        for name in set(self.states) - set(snap.services):
            self.states.pop(name, None)
            self.decisions.pop(name, None)

    async def _service(self, snap: Snapshot, rec: ServiceRecord, policy: AutoscalePolicy) -> None:
        name, current = rec.name, rec.replicas
        samples = collect_samples(snap, name, self.ctl.state.service_rps)
        desired, state, reason = desired_replicas(
            policy, current, samples, snap.now, self.states.get(name, AutoscaleState())
        )
        self.states[name] = state
        self.decisions[name] = Decision(snap.now, current, desired, reason)
        if desired == current:
            return

        def change(old: ServiceRecord | None) -> ServiceRecord | None:
            if old is None or old.deleted or not old.autoscale_enabled or policy_of(old) is None:
                return None
            if old.replicas != current:  # changed meanwhile: decide again from the fresh record
                return None
            return old.model_copy(update={"replicas": desired, "updated": time.time()})

        old, new = await update_service(self.ctl, name, change)
        if new is None or new is old:
            return
        log.info("autoscaled", service=name, replicas_from=current, replicas_to=desired, reason=reason)
        await self.ctl.emit("scaled", service=name, message=f"autoscaled from {current} to {desired}: {reason}")


def describe(ctl: Controller, rec: ServiceRecord) -> dict[str, Any]:
    """The ``autoscale`` entry of ``describe service``: policy, enabled, the last decision, the last scaling."""
    policy = policy_of(rec)
    scaler: Autoscaler | None = getattr(ctl, "autoscaler", None)
    d = scaler.decisions.get(rec.name) if scaler is not None else None
    last = next((e for e in reversed(ctl.state.events) if e.kind == "scaled" and e.service == rec.name), None)
    return {
        "enabled": policy is not None and rec.autoscale_enabled,
        "policy": policy.model_dump(mode="json") if policy is not None else None,
        "disabled_reason": (
            "turned off by 'drover scale' until the next apply" if policy is not None and not rec.autoscale_enabled
            else ""
        ),
        "last_decision": views.iso(d.time) if d is not None else None,  # on the leading controller only
        "desired": d.desired if d is not None else None,
        "reason": d.reason if d is not None else "",
        "last_scaled": views.iso(last.time) if last is not None else None,
        "last_scaled_message": last.message if last is not None else "",
    }
