"""The read barrier's decisions (controller/readbarrier.py), with fake informers and streams."""

from __future__ import annotations

import asyncio

import pytest

from drover.controller.readbarrier import ReadBarrier, Source, caught_up
from tests.fixtures.wait import ticks, wait_for


def test_caught_up_needs_every_informer_at_its_streams_last_sequence() -> None:
    assert caught_up([5, 9], [5, 8])
    assert not caught_up([5, 7], [5, 8])
    assert caught_up([], [])


class Bucket:
    def __init__(self, seen: int, last: int) -> None:
        self.seen, self.last, self.asked = seen, last, 0
        self.fail = False

    async def last_seq(self) -> int:
        self.asked += 1
        if self.fail:
            raise TimeoutError("no response from stream")
        return self.last

    def source(self, name: str) -> Source:
        return Source(name, lambda: self.seen, self.last_seq)


async def test_reads_pass_at_once_until_a_stall_is_noticed() -> None:
    b = Bucket(seen=3, last=10)  # behind, but nothing says the controller stalled: not asked at all
    barrier = ReadBarrier([b.source("services")])
    assert await barrier.ready()
    assert b.asked == 0


async def test_after_a_stall_a_read_waits_until_the_informer_caught_up() -> None:
    b = Bucket(seen=3, last=10)
    barrier = ReadBarrier([b.source("services")], poll=0.005)
    barrier.suspect()

    async def informer_catches_up() -> None:  # one entry applied every 10 ms
        async for n in ticks(0.01):
            b.seen = 4 + n
            if b.seen == 10:
                return

    ready, _ = await asyncio.gather(barrier.ready(), informer_catches_up())
    assert ready and b.seen == 10
    assert not barrier.suspect_now
    asked = b.asked
    assert await barrier.ready() and b.asked == asked  # proven: the next reads go straight through


async def test_cut_off_from_nats_a_controller_that_cannot_prove_it_is_current_is_unavailable() -> None:
    away = Bucket(seen=10, last=10)
    away.fail = True  # NATS away: nothing can be proven
    barrier = ReadBarrier([away.source("nodes")], bound=0.1, poll=0.005, connected=lambda: False)
    barrier.suspect()
    assert not await barrier.ready()
    assert barrier.suspect_now and barrier.refused == 1 and barrier.unproven == 0
    away.fail = False
    assert await barrier.ready()
    assert not barrier.suspect_now


async def test_connected_a_read_is_answered_after_the_bound_and_a_lagging_informer_relisted() -> None:
    relisted: list[str] = []
    behind = Bucket(seen=3, last=10)  # its watch fell behind: only a relist would catch it up
    fine = Bucket(seen=7, last=7)
    sources = [Source("services", lambda: behind.seen, behind.last_seq, lambda: relisted.append("services")),
               Source("nodes", lambda: fine.seen, fine.last_seq, lambda: relisted.append("nodes"))]
    barrier = ReadBarrier(sources, bound=0.1, poll=0.005)
    barrier.suspect()
    assert await barrier.ready()  # answered from what it has, not refused
    assert barrier.unproven == 1 and barrier.refused == 0 and relisted == ["services"]
    assert barrier.suspect_now  # the next read tries to prove it again
    behind.seen = 10
    assert await barrier.ready() and not barrier.suspect_now


async def test_a_stream_electing_its_leader_delays_a_read_by_the_bound_only() -> None:
    electing = Bucket(seen=10, last=10)
    electing.fail = True  # its info unanswered: JetStream takes no write on it either
    barrier = ReadBarrier([electing.source("assign")], bound=0.1, poll=0.005)
    barrier.suspect()
    started = asyncio.get_running_loop().time()
    assert await barrier.ready()
    assert asyncio.get_running_loop().time() - started < 1.0 and barrier.unproven == 1


async def test_a_stall_during_the_proof_asks_the_streams_again() -> None:
    b = Bucket(seen=10, last=10)
    barrier = ReadBarrier([b.source("services")], poll=0.005)
    stalls = iter([True, False])

    def notice() -> None:  # the first look finds a new stall, after which the stream has moved on
        if next(stalls, False):
            barrier.suspect()
            b.last = 12

    barrier.notice = notice
    barrier.suspect()

    async def informer_catches_up() -> None:  # once the new stall was noticed and the stream moved on
        await wait_for(lambda: b.last == 12, timeout=5)
        b.seen = 12

    ready, _ = await asyncio.gather(barrier.ready(), informer_catches_up())
    assert ready and b.seen == 12 and b.asked >= 1


async def test_the_bound_counts_from_the_stall_not_from_each_read() -> None:
    """A resumed controller whose streams elect leaders answers every read once ``bound`` has passed since the
    stall, each within ``retry``: a read asked later with a deadline shorter than the bound (the chaos
    monitor's 2 s) is answered, where each used to wait out a bound of its own."""
    electing = Bucket(seen=10, last=10)
    electing.fail = True
    now = [100.0]
    barrier = ReadBarrier([electing.source("assign")], bound=3.0, retry=0.05, poll=0.005, clock=lambda: now[0])
    barrier.suspect()
    now[0] += 3.5  # the bound has passed since the stall (the proof still impossible)
    loop = asyncio.get_running_loop()
    for _ in range(3):
        started = loop.time()
        assert await asyncio.wait_for(barrier.ready(), 1.0)
        assert loop.time() - started < 0.5
    assert barrier.unproven == 3 and barrier.suspect_now  # still unproven: each read tries again, briefly
    barrier.suspect()  # a second stall while suspect does not restart the bound
    assert await asyncio.wait_for(barrier.ready(), 1.0)
    electing.fail = False
    assert await barrier.ready() and not barrier.suspect_now
    barrier.suspect()  # the next stall after a proof: reads wait for the proof again, up to the bound
    electing.fail = True
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(barrier.ready(), 0.3)
