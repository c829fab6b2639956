"""An outbox for cluster events: ``put`` never blocks the caller; a supervised task publishes them in order
to the events stream with JetStream acknowledgements and retries until acknowledged.

Why not a plain ``nc.publish``: while NATS is away, or right after it restarted and before its JetStream has
recovered the events stream, a plain publish is accepted by the client and silently not stored — the events
of exactly the moments that need explaining were lost. Each event carries a ``Nats-Msg-Id``, so a retry of
an event whose acknowledgement was lost is stored once (within the stream's duplicate window).

``settled`` lets a reader see its own events: it waits until everything put so far left the outbox, after which
the stream's last sequence covers them (``drover rollout pause web && drover events --service web`` shows the
pause).
"""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import Callable
from typing import Any

import structlog

from drover.shared.models import Event
from drover.shared.retry import Backoff

log = structlog.get_logger("drover.outbox")

BATCH = 128


class EventOutbox:
    """Narrow dependencies: ``publish(subject, data, headers)`` (a JetStream publish that raises unless the
    stream acknowledged it) and ``subject(kind)``."""

    def __init__(
        self,
        publish: Callable[[str, bytes, dict[str, str]], Any],
        subject: Callable[[str], str],
        *,
        limit: int = 20_000,
        timeout: float = 2.0,
    ) -> None:
        self._publish = publish
        self._subject = subject
        self._queue: collections.deque[tuple[str, str, bytes]] = collections.deque()
        self._limit = limit
        self._timeout = timeout
        self._wake = asyncio.Event()
        self.dropped = 0  # oldest events dropped because the outbox was full (a long outage)
        self.published = 0
        self.posted = 0  # events ever put
        self._progress = asyncio.Event()  # set whenever events left the queue

    def put(self, ev: Event, msg_id: str | None = None) -> None:
        """Queue ``ev``; events given the same ``msg_id`` (e.g. by several controllers reporting the same
        damaged record) are stored once."""
        if len(self._queue) >= self._limit:
            self._queue.popleft()
            self.dropped += 1
            self._progress.set()
        self.posted += 1
        self._queue.append((msg_id or uuid.uuid4().hex, self._subject(ev.kind), ev.to_wire()))
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def run(self) -> None:
        backoff = Backoff(initial=0.1, cap=2.0)
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._queue[i] for i in range(min(BATCH, len(self._queue)))]
            results = await asyncio.gather(*(self._send(item) for item in batch), return_exceptions=True)
            done = 0
            for r in results:  # in order: stop at the first failure so the stream keeps the events' order
                if isinstance(r, BaseException):
                    break
                done += 1
            for _ in range(done):
                self._queue.popleft()
            self.published += done
            if done:
                self._progress.set()
            if done < len(batch):
                err = next(r for r in results if isinstance(r, BaseException))
                log.info("events not stored yet, retrying", pending=len(self._queue), error=repr(err))
                await backoff.wait()
            else:
                backoff.reset()

    async def _send(self, item: tuple[str, str, bytes]) -> None:
        msg_id, subject, data = item
        await asyncio.wait_for(self._publish(subject, data, {"Nats-Msg-Id": msg_id}), self._timeout)

    async def settled(self) -> None:
        """Wait until every event put before this call left the outbox (stored, or dropped by a full outbox).
        Unbounded: callers bound it."""
        mark = self.posted
        while self.published + self.dropped < mark:
            self._progress.clear()
            await self._progress.wait()

    async def flush(self, timeout: float = 2.0) -> None:
        """Wait (up to ``timeout``) until every queued event is stored (used on a clean stop)."""
        async with asyncio.timeout(timeout):
            while True:
                if not self._queue:
                    return
                await asyncio.sleep(0.02)
