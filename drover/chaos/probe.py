"""What a chaos run watches: the cluster's view (nodes ready, services converged) sampled every half
second, and HTTP requests through every node's proxy. Pure helpers read the recorded observations."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from drover.chaos.checker import Request


@dataclass(frozen=True)
class Observation:
    at: float  # s from the start of the run
    nodes: dict[str, bool]  # node → ready
    services: dict[str, bool]  # service → converged (available with all its replicas running)
    beats: dict[str, float] = field(default_factory=dict)  # node → its last heartbeat, in run time

    @property
    def converged(self) -> bool:
        return all(self.nodes.values()) and all(self.services.values())


# Settled states: a rolled-back service runs its last good revision, a cordoned or draining node is up and
# only closed to new replicas by its user; a finished job has nothing left to run. None of them ever becomes
# "available"/"ready", so counting them as unconverged would fail every run on such a cluster.
STEADY_SERVICE = frozenset({"available", "rolled-back"})
UP_NODE = frozenset({"ready", "cordoned", "draining"})


def _settled(s: dict[str, Any]) -> bool:
    if s.get("status") == "succeeded":
        return True
    return s.get("status") in STEADY_SERVICE and s.get("running") == s.get("replicas")


def observe(
    at: float, nodes: list[dict[str, Any]], services: list[dict[str, Any]], wall0: float | None = None
) -> Observation:
    """One observation from ``get_nodes`` and ``get_services`` rows; ``wall0``: the wall-clock time of the
    run's start, to place the nodes' last heartbeats in run time."""
    beats: dict[str, float] = {}
    for n in nodes:
        hb = _wall(n.get("last_heartbeat"))
        if wall0 is not None and hb is not None:
            beats[str(n.get("name"))] = hb - wall0
    return Observation(
        at,
        {str(n.get("name")): n.get("status") in UP_NODE for n in nodes},
        {str(s.get("name")): _settled(s) for s in services},
        beats,
    )


def _wall(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def first_converged_after(obs: list[Observation], t: float) -> float | None:
    return next((o.at for o in obs if o.at >= t and o.converged), None)


def node_ready_after(obs: list[Observation], node: str, t: float) -> float | None:
    """When ``node`` was first seen ready on a heartbeat sent after ``t`` (a killed agent's restart, a healed
    partition): a controller still shows a silent node ready for its node grace (and its views may be a
    moment old), so readiness alone, seen soon after ``t``, may still be the dead agent's. Without heartbeat
    times, readiness alone."""
    for o in obs:
        if o.at < t or not o.nodes.get(node, False):
            continue
        beat = o.beats.get(node)
        if beat is None and o.beats:
            continue
        if beat is None or beat > t:
            return o.at
    return None


def converged_at(obs: list[Observation], service: str, since: float) -> float | None:
    """When ``service`` converged for good after ``since``: just after its last unconverged observation
    (``since`` itself if it never was unconverged again; None if it still is at the last observation)."""
    seen = [o for o in obs if o.at >= since and service in o.services]
    if not seen:
        return None
    last_bad = None
    for i, o in enumerate(seen):
        if not o.services[service]:
            last_bad = i
    if last_bad is None:
        return since
    if last_bad == len(seen) - 1:
        return None
    return seen[last_bad + 1].at


async def http_ok(address: str, port: int, timeout: float = 2.0, path: str = "/") -> bool:
    """GET ``path`` (through a proxy, or of a nats-server's monitoring); ok on any 2xx/3xx status line."""
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
        writer.write(b"GET " + path.encode() + b" HTTP/1.0\r\nHost: chaos\r\n\r\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.split()
        return len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1][:1] in (b"2", b"3")
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class Recorder:
    """Observations and requests of one run, timed from ``t0`` (monotonic)."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.observations: list[Observation] = []
        self.requests: list[Request] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def watch(self, poll: Callable[[], Awaitable[tuple[list[Any], list[Any]] | None]], every: float) -> None:
        """Sample the cluster's view forever (an unanswered poll records nothing: unknown)."""
        while True:
            started = time.monotonic()
            with contextlib.suppress(Exception):
                got = await poll()
                if got is not None:
                    now = self.now()
                    self.observations.append(observe(now, got[0], got[1], time.time() - now))
            await asyncio.sleep(max(0.05, every - (time.monotonic() - started)))

    async def traffic(self, node: str, address: str, port: int, every: float) -> None:
        """Requests through one node's proxy forever, one at a time, ``every`` seconds apart."""
        while True:
            at = self.now()
            ok = await http_ok(address, port)
            self.requests.append(Request(at, node, ok, self.now()))
            await asyncio.sleep(every)


__all__ = ["Observation", "Recorder", "converged_at", "first_converged_after", "http_ok", "node_ready_after", "observe"]
