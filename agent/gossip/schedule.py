"""The gossip node's timetable: one asyncio loop that fires each periodic duty (probe, gossip push,
anti-entropy sync, housekeeping) at its own interval, with a random phase so that nodes started together do
not fire together, and that catches up without bursts after a stall (a late tick moves on, never repeats)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

from drover.agent.gossip.config import GossipConfig

GC_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class Duties:
    check_probe: Callable[[float], None]  # every tick: an outstanding probe timed out?
    probe: Callable[[float], None]
    gossip: Callable[[], None]
    check_suspects: Callable[[float], None]  # every tick: a suspicion ran out?
    sync: Callable[[], None]
    gc: Callable[[float], None]


def _advance(t: float, interval: float, now: float) -> float:
    t += interval
    return t if t > now else now + interval


async def run_schedule(cfg: GossipConfig, rng: random.Random, duties: Duties) -> None:
    loop = asyncio.get_running_loop()
    tick = max(0.005, min(cfg.probe_timeout, cfg.gossip_interval, cfg.probe_interval) / 2)
    now = loop.time()
    j = rng.random()
    next_probe, next_gossip = now + j * cfg.probe_interval, now + j * cfg.gossip_interval
    next_sync, next_gc = now + j * cfg.sync_interval, now + GC_INTERVAL
    while True:
        now = loop.time()
        duties.check_probe(now)
        if now >= next_probe:
            duties.probe(now)
            next_probe = _advance(next_probe, cfg.probe_interval, now)
        if now >= next_gossip:
            duties.gossip()
            next_gossip = _advance(next_gossip, cfg.gossip_interval, now)
        duties.check_suspects(now)
        if now >= next_sync:
            duties.sync()
            next_sync = _advance(next_sync, cfg.sync_interval, now)
        if now >= next_gc:
            duties.gc(now)
            next_gc = _advance(next_gc, GC_INTERVAL, now)
        await asyncio.sleep(tick)
