"""The read barrier: after a stall or a reconnect, API reads wait until the informers have caught up.

A controller resumed from a pause (SIGSTOP, a long GC) or reconnected to NATS still holds the state it had
before: what was written to the buckets meanwhile is queued in its socket, or waits for a relist. Answered at
once, a ``get``/``describe`` would show that old state (a service applied meanwhile missing, a scale not
there). So once the controller noticed a stall or reconnect (``LoopWatch``'s ``on_restart``: ``suspect``),
a read first waits, at most ``BOUND`` seconds, until every informer has applied its bucket's stream up to the
last sequence that stream had when asked *after* the stall (stream info's ``last_seq``; a KV entry's revision
is its stream sequence). Proven once, reads go straight through again until the next stall. A controller that
cannot prove it in time (NATS away, a stream electing a leader) answers ``unavailable`` rather than old state;
the CLI asks again, reaching another controller, or this one once it caught up.

The decision is pure (``caught_up``); ``ReadBarrier`` does the waiting with narrow dependencies: for each
bucket, what its informer applied and how to ask the stream's last sequence.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from drover.shared.informer import Informer

BOUND = 2.0  # seconds a read waits for the proof before it is answered "unavailable"
POLL = 0.02  # seconds between looks at the informers while waiting
UNAVAILABLE = "unavailable"


def caught_up(seen: Sequence[int], last: Sequence[int]) -> bool:
    """Every informer applied its stream up to the last sequence the stream had when asked."""
    return all(s >= t for s, t in zip(seen, last, strict=True))


@dataclass(frozen=True)
class Source:
    """One bucket: the highest stream sequence its informer applied, and how to ask the stream's last one."""

    name: str
    seen: Callable[[], int]
    last: Callable[[], Awaitable[int]]


async def stream_last_seq(kv: Any) -> int:
    """The last sequence of a KV bucket's stream (nats-py's ``KeyValue.status``)."""
    status = await kv.status()
    return int(status.stream_info.state.last_seq)


def source_of(informer: Informer[Any]) -> Source:
    """The barrier's view of one informer and its bucket."""
    return Source(informer.name, lambda: informer.seen, lambda: stream_last_seq(informer.kv))


class ReadBarrier:
    def __init__(
        self, sources: Sequence[Source], *, notice: Callable[[], object] = lambda: None, bound: float = BOUND,
        poll: float = POLL, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``notice()`` is called first by every read (``LoopWatch.check``): a read that is the first thing
        the controller handles after a pause notices the pause itself."""
        self.sources = list(sources)
        self.notice = notice
        self.bound = bound
        self.poll = poll
        self.clock = clock
        self._suspect = False
        self._epoch = 0  # counts ``suspect`` calls: a proof is good only for the stalls before it was asked
        self._lock = asyncio.Lock()  # one read proves it for all the reads waiting behind it
        self.refused = 0  # reads answered "unavailable" (for tests and metrics)

    @property
    def suspect_now(self) -> bool:
        return self._suspect

    def suspect(self, _now: float = 0.0) -> None:
        """The controller stalled, reconnected or is disconnected: its state may be behind the buckets."""
        self._suspect = True
        self._epoch += 1

    async def ready(self) -> bool:
        """True when reads may be answered now (at once when nothing is suspect; else once proven current,
        within ``bound``); False when that could not be proven in time."""
        self.notice()
        if not self._suspect:
            return True
        try:
            async with asyncio.timeout(self.bound):
                async with self._lock:
                    while self._suspect:
                        await self._prove()
            return True
        except TimeoutError:
            self.refused += 1
            return False

    async def _prove(self) -> None:
        """Clear ``suspect`` once the informers reached the streams' last sequences asked after the last
        stall; returns without clearing when another stall came meanwhile (the caller asks again)."""
        epoch = self._epoch
        try:
            last = [await source.last() for source in self.sources]
        except Exception:  # NATS away or a stream electing its leader: not proven, ask again shortly
            await asyncio.sleep(self.poll)
            return
        while not caught_up([source.seen() for source in self.sources], last):
            if self._epoch != epoch:
                return
            await asyncio.sleep(self.poll)
            self.notice()
        if self._epoch == epoch:
            self._suspect = False
