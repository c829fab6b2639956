"""Pure: what a hollow node (``drover agent --driver sim --count N``) reports for its assignment.

A hollow node runs no containers. Each assigned replica is ``starting`` from the moment it is seen and
``running`` (and ready) ``start_delay`` seconds later; a replica no longer assigned is gone at once. The
statuses have the same shape a real agent reports (``agent/status.py``), as plain wire dicts, because a
fleet of a thousand nodes re-sends them every second and building models each time would cost more than
the rest of the fleet together.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from drover.agent.drivers.base import container_name, spec_ports
from drover.shared import hbwire
from drover.shared.models import AssignedContainer, ContainerState

_fake_ports = itertools.count(20000)


def _fake_port() -> int:
    """A unique-looking host port (nothing listens on it: hollow containers publish nothing)."""
    return 20000 + next(_fake_ports) % 40000


@dataclass
class HollowReplica:
    assigned_revision: int
    service: str
    due: float  # when it turns running
    status: dict[str, Any]  # ContainerStatus as a wire dict
    packed: tuple[dict[str, Any], bytes] | None = None  # ``status`` and its heartbeat entry, packed once


@dataclass
class HollowState:
    """The replicas of one hollow node, by replica id."""

    replicas: dict[str, HollowReplica] = field(default_factory=dict)
    next_due: float | None = None  # the earliest pending start, None when none

    def statuses(self) -> list[dict[str, Any]]:
        return [r.status for r in self.replicas.values()]

    def entries(self) -> list[bytes]:
        """The replicas' heartbeat entries (``shared/hbwire.py``), each packed once per status."""
        out = []
        for r in self.replicas.values():
            if r.packed is None or r.packed[0] is not r.status:
                r.packed = (r.status, hbwire.pack_container(r.status))
            out.append(r.packed[1])
        return out


def _status(a: AssignedContainer, state: ContainerState, now: float) -> dict[str, Any]:
    running = state is ContainerState.RUNNING
    ports = {name: _fake_port() for name, _ in spec_ports(a.spec)} if running else {}
    return {
        "id": a.id,
        "container_id": f"hollow-{a.id}" if running else "",
        "name": container_name(a.service, a.id),
        "service": a.service,
        "revision": a.revision,
        "state": str(state),
        "ready": running,
        "restarts": a.restarts,
        "host_port": next(iter(ports.values()), None),
        "ports": ports,
        "started_at": now if running else None,
        "exit_code": None,
        "message": "",
    }


def converge(state: HollowState, wanted: list[AssignedContainer], now: float, start_delay: float) -> list[str]:
    """Bring ``state`` to the assignment ``wanted``; returns the ids of replicas that started right away
    (``start_delay`` 0) so the caller can report them. Replicas of a changed revision start again."""
    started: list[str] = []
    keep = {a.id for a in wanted}
    for rid in [rid for rid in state.replicas if rid not in keep]:
        del state.replicas[rid]
    for a in wanted:
        cur = state.replicas.get(a.id)
        if cur is not None and cur.assigned_revision == a.revision and cur.service == a.service:
            continue
        if start_delay <= 0:
            state.replicas[a.id] = HollowReplica(a.revision, a.service, now, _status(a, ContainerState.RUNNING, now))
            started.append(a.id)
        else:
            pending = _status(a, ContainerState.STARTING, now)
            state.replicas[a.id] = HollowReplica(a.revision, a.service, now + start_delay, pending)
    state.next_due = min((r.due for r in state.replicas.values() if not r.status["ready"]), default=None)
    return started


def promote(state: HollowState, wanted: dict[str, AssignedContainer], now: float) -> list[str]:
    """Turn the replicas whose start delay has passed into running ones; returns their ids."""
    if state.next_due is None or state.next_due > now:
        return []
    started: list[str] = []
    for rid, r in state.replicas.items():
        if not r.status["ready"] and r.due <= now and rid in wanted:
            r.status = _status(wanted[rid], ContainerState.RUNNING, now)
            started.append(rid)
    state.next_due = min((r.due for r in state.replicas.values() if not r.status["ready"]), default=None)
    return started


def next_periodic_beat(next_beat: float, now: float, interval: float) -> float:
    """When a node's next periodic heartbeat is due, after one was sent at ``now`` (monotonic).

    A beat sent early (the node's containers changed) leaves the schedule alone, so the next one is never more
    than an interval away. Moving the schedule an interval further on every early beat let a node whose
    containers changed three times in a row fall silent for three intervals after the last: at 300 hollow
    nodes an apply made every node silent for 3.3 s and a third of them were declared lost at once."""
    if now < next_beat:
        return next_beat
    return max(next_beat + interval, now)  # on schedule (staggered), or after a stall: from now


__all__ = ["HollowReplica", "HollowState", "converge", "next_periodic_beat", "promote"]
