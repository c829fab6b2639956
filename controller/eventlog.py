"""The controller's copy of the recent cluster events (what ``drover events`` and ``describe`` show), followed
from the events stream.

It resumes from the last stream sequence it holds whenever the NATS client reconnected (the server's
ephemeral consumer did not survive a restart, and nats-py's ordered consumer only notices after two missed
idle heartbeats, then tries once), and every ``resync`` seconds as a safety net; a sequence already held is
never appended twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from drover.controller.eventring import EventRing
from drover.shared.informer import WATCH_SETUP_FIRST, WATCH_SETUP_MAX
from drover.shared.retry import Backoff, Patience

log = structlog.get_logger("drover.controller.eventlog")

KEEP = 1000  # events read back from the stream at start


class EventLog:
    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        subjects: str,
        events: EventRing,
        *,
        reconnects: Callable[[], int],
        resync: float = 30.0,
        poll: float = 0.25,
    ) -> None:
        self.js, self.stream, self.subjects, self.events = js, stream, subjects, events
        self.reconnects = reconnects
        self.resync = resync
        self.poll = poll
        self.last_seq = 0
        self.ready = asyncio.Event()
        self.resubscribed = 0
        self.setup = Patience(WATCH_SETUP_FIRST, WATCH_SETUP_MAX)
        self._advanced = asyncio.Event()

    def _on_message(self, seq: int, subject: str, data: bytes) -> None:
        if seq <= self.last_seq:
            return  # already held (a resubscription overlapping what was delivered)
        self.last_seq = seq
        self.events.append((subject, data))  # decoded when read (controller/eventring.py): most of a burst never is
        self._advanced.set()

    async def stream_last(self) -> int:
        """The stream's last sequence now: every event stored so far, by any controller or agent (0 when the
        stream holds none: its last may have aged out, and would never be delivered)."""
        info = await self.js.stream_info(self.stream)
        return (info.state.last_seq or 0) if info.state.messages else 0

    async def reached(self, seq: int) -> None:
        """Wait until the events up to stream sequence ``seq`` are held. Unbounded: callers bound it."""
        while self.last_seq < seq:
            self._advanced.clear()
            await self._advanced.wait()

    async def run(self) -> None:
        backoff = Backoff(initial=0.1, cap=2.0)
        while True:
            try:
                await self._follow()
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("events stream unavailable, resubscribing", error=repr(exc))
                await backoff.wait()

    async def _follow(self) -> None:
        seen = self.reconnects()
        if self.last_seq == 0:
            info = await self.js.stream_info(self.stream)
            last = info.state.last_seq or 0
            start = max(1, last - KEEP + 1)
            self.last_seq = start - 1
        start = self.last_seq + 1

        async def cb(msg: Msg) -> None:
            self._on_message(msg.metadata.sequence.stream, msg.subject, msg.data)

        # As an informer's watch: a consumer request that met the meta leader's election is asked again soon.
        sub: Any = await self.setup.run(self.js.subscribe(
            self.subjects,
            stream=self.stream,
            cb=cb,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            config=ConsumerConfig(opt_start_seq=start),
        ))
        self.resubscribed += 1
        self.ready.set()
        try:
            loop = asyncio.get_running_loop()
            began = loop.time()
            while True:  # polled: the client offers no reconnect notification we could wait on
                await asyncio.sleep(self.poll)
                if self.reconnects() != seen or loop.time() - began >= self.resync:
                    return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
