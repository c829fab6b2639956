"""Keeping a daemon's event loop responsive: garbage-collector settings for big, long-lived state, and a
watch that measures (and logs) how late the loop runs.

A controller at 10,000 replicas holds a few million objects (records, dicts, lists) that live as long as the
process. CPython's cyclic collector walks all of them in every full (generation 2) collection: measured
here, 0.2-0.8 s each, every few seconds under load — long enough for a 2 s leader lease to lapse. These
objects are freed by reference counting when replaced (records are acyclic), so the cyclic collector has
nothing to find among them:

- ``gc.freeze()`` moves everything alive into the permanent generation, which collections skip; it is
  re-done periodically so that state built since (new records) is skipped too;
- a larger generation-0 threshold makes collections rarer (allocation-heavy bursts such as decoding a
  thousand heartbeats cost one collection instead of dozens).

Cycles among frozen objects would no longer be collected; they are rare here (and bounded by how much is
frozen), which is the trade-off Instagram and others make for big Python services.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

import structlog

GEN0_THRESHOLD = 50_000
FREEZE_INTERVAL = 5.0  # seconds between gc.freeze() calls (cheap: it moves lists)
TICK = 0.1


def calm_gc() -> None:
    """Raise the thresholds once and freeze what is alive now; call again to freeze newer state."""
    gen0, gen1, gen2 = gc.get_threshold()
    if gen0 < GEN0_THRESHOLD:
        gc.set_threshold(GEN0_THRESHOLD, max(gen1, 20), max(gen2, 20))
    gc.freeze()


async def watch_loop(observe: Callable[[float], None], *, warn_after: float, log: Any = None) -> None:
    """Forever: calls ``observe(lag)`` with how late a ``TICK`` timer fired (the delay every other task on
    the loop — a lease renewal first — suffers), logs a lag over ``warn_after`` and a collection over 0.1 s,
    and keeps the collector calm (``calm_gc`` now and every ``FREEZE_INTERVAL``)."""
    log = log or structlog.get_logger("drover.loop")
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started and time.perf_counter() - started[0] > 0.1:
            took = time.perf_counter() - started[0]
            log.warning("long garbage collection", seconds=round(took, 3), generation=info.get("generation"))

    gc.callbacks.append(on_gc)
    try:
        frozen = time.perf_counter()
        calm_gc()
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(TICK)
            lag = max(0.0, time.perf_counter() - t0 - TICK)
            observe(lag)
            if lag > warn_after:
                log.warning("event loop stalled", seconds=round(lag, 3))
            if t0 - frozen > FREEZE_INTERVAL:
                frozen = t0
                calm_gc()  # state built since the last freeze leaves the collector's view too
    finally:
        gc.callbacks.remove(on_gc)
