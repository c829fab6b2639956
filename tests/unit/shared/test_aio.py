"""The commands' concurrency helpers: no task outlives the block or race that started it."""

from __future__ import annotations

import asyncio

import pytest

from drover.shared.aio import Background, race, uncancellable


async def value(v: str) -> str:
    return v


async def test_race_main_first_returns_its_result_and_stops_the_rival() -> None:
    stop = asyncio.Event()
    r = await race(value("done"), stop.wait())
    assert r.finished and r.result == "done" and r.rival is None


async def test_race_rival_first_cancels_main() -> None:
    cancelled = asyncio.Event()

    async def main() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    r = await race(main(), value("denied"))
    assert not r.finished and r.rival == "denied" and cancelled.is_set()


async def test_race_passes_mains_error_on() -> None:
    async def boom() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        await race(boom(), asyncio.Event().wait())


async def test_cancelling_a_race_cancels_both_sides() -> None:
    started: list[asyncio.Event] = [asyncio.Event(), asyncio.Event()]
    ended: list[str] = []

    async def side(name: str, i: int) -> None:
        started[i].set()
        try:
            await asyncio.Event().wait()
        finally:
            ended.append(name)

    task = asyncio.ensure_future(race(side("main", 0), side("rival", 1)))
    await asyncio.wait_for(asyncio.gather(started[0].wait(), started[1].wait()), 5)  # both sides running
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(ended) == ["main", "rival"]


async def test_background_tasks_end_with_their_block() -> None:
    ended: list[str] = []
    running = {"a": asyncio.Event(), "b": asyncio.Event()}

    async def forever(name: str) -> None:
        running[name].set()
        try:
            await asyncio.Event().wait()
        finally:
            ended.append(name)

    async with Background("t") as bg:
        a = bg.start(forever("a"), "a")
        bg.start(forever("b"), "b")
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in running.values())), 5)
        assert a.get_name() == "t:a"
    assert sorted(ended) == ["a", "b"]


async def test_uncancellable_finishes_its_work_before_the_cancel_passes() -> None:
    done = asyncio.Event()
    gate = asyncio.Event()
    waiting = asyncio.Event()

    async def change() -> None:
        waiting.set()
        await gate.wait()
        done.set()

    task = asyncio.ensure_future(uncancellable(change()))
    await asyncio.wait_for(waiting.wait(), 5)  # the change is under way
    task.cancel()
    with pytest.raises(TimeoutError):  # the cancelled caller still waits for the change …
        await asyncio.wait_for(asyncio.shield(task), 0.2)
    assert not task.done()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done.is_set()
