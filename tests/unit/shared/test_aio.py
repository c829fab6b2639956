"""The commands' concurrency helpers: no task outlives the block or race that started it."""

from __future__ import annotations

import asyncio

import pytest

from drover.shared.aio import Background, race, uncancellable


async def test_race_main_first_returns_its_result_and_stops_the_rival() -> None:
    stop = asyncio.Event()
    r = await race(asyncio.sleep(0, "done"), stop.wait())
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

    r = await race(main(), asyncio.sleep(0, "denied"))
    assert not r.finished and r.rival == "denied" and cancelled.is_set()


async def test_race_passes_mains_error_on() -> None:
    async def boom() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        await race(boom(), asyncio.Event().wait())


async def test_cancelling_a_race_cancels_both_sides() -> None:
    started = asyncio.Event()
    ended: list[str] = []

    async def side(name: str) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            ended.append(name)

    task = asyncio.ensure_future(race(side("main"), side("rival")))
    await started.wait()
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(ended) == ["main", "rival"]


async def test_background_tasks_end_with_their_block() -> None:
    ended: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            ended.append(name)

    async with Background("t") as bg:
        a = bg.start(forever("a"), "a")
        bg.start(forever("b"), "b")
        await asyncio.sleep(0)
        assert a.get_name() == "t:a"
    assert sorted(ended) == ["a", "b"]


async def test_uncancellable_finishes_its_work_before_the_cancel_passes() -> None:
    done = asyncio.Event()
    gate = asyncio.Event()

    async def change() -> None:
        await gate.wait()
        done.set()

    task = asyncio.ensure_future(uncancellable(change()))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0)
    assert not task.done()  # still waiting for the change
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done.is_set()
