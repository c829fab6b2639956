"""The endpoints this node announces in the gossip, and their withdrawal before a container stops.

Rebuilt from the agent's container statuses: every ready, running container with a host port is an
``Endpoint(service, address, host_port, node, replica id, revision, ready=True)``. A container the agent is
about to stop is withdrawn first: the entry becomes a tombstone and gossip gets ``DRAIN_DELAY`` to spread it
before the stop goes on, so proxies never send new connections to a draining container. The delay counts
from when the endpoint actually left the announcement (its status may have gone first, when the replica
left the assignment), so it is neither skipped nor paid twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence

import structlog

from drover.agent.discovery.keys import local_endpoints
from drover.agent.gossip import Endpoint
from drover.shared.models import ContainerStatus

DRAIN_DELAY = 0.3  # seconds gossip gets to spread a withdrawn endpoint before its container is stopped
WITHDRAWN_TTL = 120.0  # forget a withdrawn container id after this long


class Announcer:
    """``publish(endpoints)`` puts the local endpoints into the gossip (None: no gossip yet)."""

    def __init__(self, node: str, address: str, log: structlog.typing.FilteringBoundLogger) -> None:
        self.node = node
        self.address = address
        self.log = log
        self.publish: Callable[[Sequence[Endpoint]], None] | None = None
        self.statuses: list[ContainerStatus] = []
        self._withdrawn: dict[str, float] = {}  # container id -> when it was withdrawn
        self._gone_at: dict[str, float] = {}  # container id -> when its endpoints left the announcement
        self._announced: list[Endpoint] = []
        self._announced_statuses: list[ContainerStatus] = []  # the statuses ``_announced`` came from

    def on_statuses(self, statuses: list[ContainerStatus]) -> None:
        self.statuses = statuses
        self.announce()

    def announce(self) -> bool:
        """Put the local endpoints into the gossip; True when some endpoint went away."""
        if self.publish is None:
            return False
        now = time.monotonic()
        cutoff = now - WITHDRAWN_TTL
        self._withdrawn = {c: t for c, t in self._withdrawn.items() if t > cutoff}
        self._gone_at = {c: t for c, t in self._gone_at.items() if t > cutoff}
        eps = local_endpoints(self.statuses, self.node, self.address, self._withdrawn)
        gone = set(self._announced) - set(eps)
        if gone:  # which containers went: their stop must still give the tombstones DRAIN_DELAY to spread
            before = {(s.id, s.revision): s.container_id for s in self._announced_statuses}
            for e in gone:
                cid = before.get((e.container, e.revision))
                if cid:
                    self._gone_at.setdefault(cid, now)
        self._announced = eps
        self._announced_statuses = [s for s in self.statuses if s.container_id]
        self.publish(eps)
        return bool(gone)

    async def withdraw(self, container_ids: Iterable[str]) -> None:
        """Take these containers out of the endpoint table before they are stopped; returns once their
        tombstones had ``DRAIN_DELAY`` to spread (at once when none of them was announced)."""
        now = time.monotonic()
        ids = [c for c in container_ids if c]
        new = [c for c in ids if c not in self._withdrawn]
        for c in new:
            self._withdrawn[c] = now
        if new and self.announce():
            self.log.info("endpoints withdrawn before stop", containers=[c[:12] for c in new])
        gone = [self._gone_at[c] for c in ids if c in self._gone_at]
        wait = max((t + DRAIN_DELAY - time.monotonic() for t in gone), default=0.0)
        if wait > 0:
            await asyncio.sleep(wait)
