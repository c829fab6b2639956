"""The heartbeat sender: a node's ``Heartbeat`` every ``interval`` seconds and at once when ``now()`` is
called (its containers changed). Narrow dependencies: the NATS connection (read when sending: it may be
replaced or away), the subject, a builder of the heartbeat and a hook run before each send (the agent
checks for a NATS reconnect there). Losing NATS skips beats; nothing queues up. A heartbeat over the
server's maximum payload (thousands of replicas on one node) is not sent and said loudly, once a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from drover.shared.models import Heartbeat

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

TOO_BIG_WARN_EVERY = 60.0


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
        self._too_big_warned: float | None = None

    def now(self) -> None:
        """Send the next heartbeat at once (something changed)."""
        self._now.set()

    async def send(self) -> None:
        nc = self.nc()
        if nc is None or not nc.is_connected:
            return
        hb = self.build()
        data = hb.to_wire()
        if len(data) > nc.max_payload:
            t = time.monotonic()
            if self._too_big_warned is None or t - self._too_big_warned > TOO_BIG_WARN_EVERY:
                self._too_big_warned = t
                self.log.warning("heartbeat over the server's max payload; not sent", size=len(data),
                                 max_payload=nc.max_payload, containers=len(hb.containers))
            return
        try:
            await nc.publish(self.subject, data)
        except Exception as exc:
            self.log.debug("heartbeat not sent", error=repr(exc))

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: wait_for may swallow a cancel on 3.11
                async with asyncio.timeout(self.interval):
                    await self._now.wait()
            self._now.clear()
            self.before_send()
            await self.send()
