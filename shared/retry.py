"""One retry/backoff helper: exponential delays with a cap and a reset, for every loop that waits out a
failure (a watch to re-establish, an event to re-publish, a CAS to retry) instead of hand-written sleeps;
``retrying`` runs one repeatable operation through it within a deadline."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Backoff:
    """Delays ``initial``, ``initial*factor``, … up to ``cap``; ``reset()`` after a success starts over.
    ``jitter`` (0..1) shortens each delay by up to that fraction so that many clients do not retry in step."""

    initial: float = 0.1
    cap: float = 5.0
    factor: float = 2.0
    jitter: float = 0.0
    _next: float = field(default=0.0, init=False)
    _rng: random.Random = field(default_factory=random.Random, init=False, repr=False)

    def next_delay(self) -> float:
        delay = self._next or self.initial
        self._next = min(delay * self.factor, self.cap)
        if self.jitter:
            delay *= 1.0 - self.jitter * self._rng.random()
        return delay

    def reset(self) -> None:
        self._next = 0.0

    async def wait(self) -> None:
        await asyncio.sleep(self.next_delay())


@dataclass
class Patience:
    """How long to wait for a request that may never be answered and is then simply asked again: ``first``
    seconds, doubled after each try that timed out, at most ``cap``; ``reset()`` after an answer. For set-ups
    that a JetStream election can swallow (a consumer the meta leader, being elected, never creates): waiting
    out nats-py's 5 s each time kept a reader seconds behind an election that took one or two, while a loaded
    server that needs longer still gets it on a later try."""

    first: float = 1.0
    cap: float = 5.0
    _now: float = field(default=0.0, init=False)

    @property
    def timeout(self) -> float:
        return self._now or self.first

    async def run(self, op: Awaitable[T]) -> T:
        """``op`` within ``timeout``; a timeout doubles the next one and is raised (``TimeoutError``). Given up
        by cancelling: callers pass set-ups that leave nothing behind before the server has answered."""
        try:
            result = await asyncio.wait_for(op, self.timeout)
        except TimeoutError:
            self._now = min(self.timeout * 2, self.cap)
            raise
        self.reset()
        return result

    def reset(self) -> None:
        self._now = 0.0


async def retrying(
    op: Callable[[], Awaitable[T]],
    *,
    retry_on: tuple[type[BaseException], ...],
    deadline: float,
    backoff: Backoff | None = None,
) -> T:
    """``op()``, called again after each ``retry_on`` failure (with ``backoff``'s delays) for at most
    ``deadline`` seconds from now; the last failure is raised once the next delay would end past the
    deadline. ``op`` must be safe to repeat (a compare-and-set, a request id): a failure may have been done."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    delays = backoff or Backoff(initial=0.1, cap=1.0, jitter=0.2)
    while True:
        try:
            return await op()
        except retry_on:
            delay = delays.next_delay()
            if loop.time() + delay > end:
                raise
            await asyncio.sleep(delay)
