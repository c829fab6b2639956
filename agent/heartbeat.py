"""The heartbeat sender: a node's ``Heartbeat`` every ``interval`` seconds and at once when ``now()`` is
called (its containers changed). Narrow dependencies: the NATS connection (read when sending: it may be
replaced or away), the subject, a builder of the heartbeat and a hook run before each send (the agent
checks for a NATS reconnect there). Losing NATS skips beats; nothing queues up.

A heartbeat goes out in parts of at most the server's ``max_payload`` (``shared/hbwire.py``), so a node with
thousands of replicas is heard like any other. Each container's compact entry is packed once and reused
while its status object is the same. A heartbeat that cannot be sent (its header alone over the limit, or a
publish refused) is said loudly, once a minute — never dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import structlog

from drover.shared import hbwire
from drover.shared.errors import WireError
from drover.shared.log import Throttled
from drover.shared.models import ContainerStatus, Heartbeat

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

WARN_EVERY = 60.0
RECONNECT_POLL = 0.1  # s between heartbeat attempts while the connection is down


class EntryCache:
    """Packed heartbeat entries of the statuses sent last, by object: a status that is the same object as in
    the previous heartbeat (the agent replaces statuses that change) is not packed again."""

    def __init__(self) -> None:
        self._packed: dict[int, tuple[ContainerStatus, bytes]] = {}

    def entries(self, statuses: list[ContainerStatus]) -> list[bytes]:
        packed: dict[int, tuple[ContainerStatus, bytes]] = {}
        out = []
        for s in statuses:
            hit = self._packed.get(id(s))
            entry = hit[1] if hit is not None and hit[0] is s else hbwire.pack_container(s.model_dump(mode="json"))
            packed[id(s)] = (s, entry)  # holding the object keeps its id from being reused
            out.append(entry)
        self._packed = packed
        return out


def header(hb: Heartbeat) -> dict[str, object]:
    return {"node": hb.node, "boot_id": hb.boot_id, "seq": hb.seq, "time": hb.time, "generation": hb.generation,
            "service_rps": hb.service_rps}


class HeartbeatSender:
    def __init__(
        self,
        nc: Callable[[], NATS | None],
        subject: str,
        build: Callable[[], Heartbeat],
        *,
        interval: float,
        before_send: Callable[[], None] = lambda: None,
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self.nc = nc
        self.subject = subject
        self.build = build
        self.interval = interval
        self.before_send = before_send
        self.log = log
        self._now = asyncio.Event()
        self._warning = Throttled(log, WARN_EVERY)
        self._cache = EntryCache()

    def now(self) -> None:
        """Send the next heartbeat at once (something changed)."""
        self._now.set()

    async def send(self) -> bool:
        """Send one heartbeat now; False when there is no connection to send it on."""
        nc = self.nc()
        if nc is None or not nc.is_connected:
            return False
        hb = self.build()
        limit = hbwire.part_limit(nc.max_payload)
        await publish_parts(nc, self.subject, lambda: hbwire.split(header(hb), self._cache.entries(hb.containers),
                                                                   limit), self._warning, containers=len(hb.containers))
        return True

    async def run(self) -> None:
        wait = self.interval
        while True:
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: wait_for may swallow a cancel on 3.11
                async with asyncio.timeout(wait):
                    await self._now.wait()
            self._now.clear()
            self.before_send()
            # While disconnected (a partition, a nats-server's death) look again soon: the first heartbeat
            # goes out as the connection comes back, not up to an interval later.
            wait = self.interval if await self.send() else min(self.interval, RECONNECT_POLL)


async def publish_parts(
    nc: NATS, subject: str, parts: Callable[[], Iterable[bytes]], warning: Throttled, **context: object
) -> bool:
    """Publish a heartbeat's parts; False, with a warning at most once a minute (``warning``), when it cannot
    be cut to size (``WireError``) or a publish fails: a beat is skipped, never queued. Shared by the agent's
    sender and the hollow fleet's."""
    try:
        for part in parts():
            await nc.publish(subject, part)
    except Exception as exc:  # WireError (cannot be cut to size) or a refused/failed publish
        warning.warning("heartbeat not sent", error=repr(exc), max_payload=nc.max_payload,
                        too_big=isinstance(exc, WireError), **context)
        return False
    return True
