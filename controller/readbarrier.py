"""The read barrier: after a stall of its own loop, API reads wait until the informers have caught up.

A controller resumed from a pause (SIGSTOP, a long GC, a busy loop) still holds the state it had before: what
was written to the buckets meanwhile is queued in its socket. Answered at once, a ``get``/``describe`` would
show that old state (a service applied meanwhile missing, a scale not there). So once the controller noticed
a stall (``LoopWatch``'s ``on_stall``: ``suspect``), a read first waits, at most ``BOUND`` seconds, until every
informer has applied its bucket's stream up to the last sequence that stream had when asked *after* the stall
(stream info's ``last_seq``; a KV entry's revision is its stream sequence). Proven once, reads go straight
through again until the next stall. A NATS reconnect alone is not a cue: the informers list their buckets
again then, and a proof would need every stream's leader, which a nats-server's death takes seconds to elect
(the chaos run's recoveries after nats-kills went from under 9 s to 10-17 s with reconnects as cues).

Not proven within ``BOUND`` (3 s) of the stall: a controller cut off from NATS answers ``unavailable`` rather than
old state (the CLI asks again, reaching another controller, or this one once it is back). A connected one answers
from what it has, and the next read tries again, for at most ``RETRY`` (0.2 s): the bound counts from the stall,
not from each read (a read asked with a 1-2 s deadline, as the chaos monitor's, was never answered while a
stream elected its leader: each waited out its own 3 s, and a resumed controller answered no read for 6 s).
What stops the proof then is JetStream itself (a stream electing its leader after a nats-server died answers no
info, and takes no write either) or a watch that fell behind (its informer is told to relist, ``Source.relist``).
Refusing in those cases made every read of a 10-minute chaos run fail for up to 20 s after a nats-server died
during a pause (a read must never be less available than the cluster it reads).

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

BOUND = 3.0  # seconds after a stall that reads wait for the proof (then: answered, or "unavailable" when cut off)
RETRY = 0.2  # seconds a read past the bound still gives the proof (one round of stream infos from live leaders)
POLL = 0.02  # seconds between looks at the informers while waiting
UNAVAILABLE = "unavailable"


def caught_up(seen: Sequence[int], last: Sequence[int]) -> bool:
    """Every informer applied its stream up to the last sequence the stream had when asked."""
    return all(s >= t for s, t in zip(seen, last, strict=True))


@dataclass(frozen=True)
class Source:
    """One bucket: the highest stream sequence its informer applied, how to ask the stream's last one, and how
    to make the informer list the bucket again (its watch fell behind)."""

    name: str
    seen: Callable[[], int]
    last: Callable[[], Awaitable[int]]
    relist: Callable[[], None] = lambda: None


async def stream_last_seq(kv: Any) -> int:
    """The last sequence of a KV bucket's stream (nats-py's ``KeyValue.status``)."""
    status = await kv.status()
    return int(status.stream_info.state.last_seq)


def source_of(informer: Informer[Any]) -> Source:
    """The barrier's view of one informer and its bucket."""
    return Source(informer.name, lambda: informer.seen, lambda: stream_last_seq(informer.kv), informer.relist)


class ReadBarrier:
    def __init__(
        self, sources: Sequence[Source], *, notice: Callable[[], object] = lambda: None, bound: float = BOUND,
        poll: float = POLL, clock: Callable[[], float] = time.monotonic, connected: Callable[[], bool] = lambda: True,
        retry: float = RETRY,
    ) -> None:
        """``notice()`` is called first by every read (``LoopWatch.check``): a read that is the first thing
        the controller handles after a pause notices the pause itself. ``connected()``: whether the controller
        is connected to NATS now."""
        self.sources = list(sources)
        self.notice = notice
        self.bound = bound
        self.retry = retry
        self.poll = poll
        self.clock = clock
        self.connected = connected
        self._suspect = False
        self._since = 0.0  # when the controller last became suspect (clock()): the bound counts from there
        self._epoch = 0  # counts ``suspect`` calls: a proof is good only for the stalls before it was asked
        self._lock = asyncio.Lock()  # one read proves it for all the reads waiting behind it
        self._last: list[int] | None = None  # the streams' last sequences of the proof under way (None: unknown)
        self.refused = 0  # reads answered "unavailable" (for tests and metrics)
        self.unproven = 0  # reads answered from what the controller had, the proof not reached in time

    @property
    def suspect_now(self) -> bool:
        return self._suspect

    def suspect(self, _now: float = 0.0) -> None:
        """The controller's loop stalled: its state may be behind the buckets. The bound counts from the first
        stall not yet proven past."""
        if not self._suspect:
            self._since = self.clock()
        self._suspect = True
        self._epoch += 1

    async def ready(self) -> bool:
        """True when a read may be answered now: at once when nothing is suspect, else once proven current or,
        connected to NATS, once ``bound`` has passed since the stall without a proof (see the module's
        docstring); False (answer ``unavailable``) when not connected by then."""
        self.notice()
        if not self._suspect:
            return True
        try:
            async with asyncio.timeout(max(self.retry, self.bound - (self.clock() - self._since))):
                async with self._lock:
                    while self._suspect:
                        await self._prove()
            return True
        except TimeoutError:
            if not self.connected():
                self.refused += 1
                return False
            self.unproven += 1
            last = self._last
            for i, source in enumerate(self.sources):  # a watch behind a stream that answers: list it again
                if last is not None and source.seen() < last[i]:
                    source.relist()
            return True

    async def _prove(self) -> None:
        """Clear ``suspect`` once the informers reached the streams' last sequences asked after the last
        stall; returns without clearing when another stall came meanwhile (the caller asks again)."""
        epoch = self._epoch
        try:
            # All at once: a stream electing its leader delays only its own answer.
            self._last = list(await asyncio.gather(*(source.last() for source in self.sources)))
        except Exception:  # NATS away or a stream electing its leader: not proven, ask again shortly
            await asyncio.sleep(self.poll)
            return
        last = self._last
        while not caught_up([source.seen() for source in self.sources], last):
            if self._epoch != epoch:
                return
            await asyncio.sleep(self.poll)
            self.notice()
        if self._epoch == epoch:
            self._suspect = False
            self._last = None
