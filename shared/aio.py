"""Short-lived concurrency for commands and tools (the CLI, chaos): every task they start is named and
started here, and none outlives the block that started it. Daemons run their long-lived work through the
``Supervisor`` (``tasks.py``) instead."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U")


def spawn(coro: Awaitable[T], name: str) -> asyncio.Task[T]:
    """A named task for ``coro`` (a coroutine or a future); the caller owns it (awaits or cancels it)."""
    task = asyncio.ensure_future(coro)
    task.set_name(name)
    return task


async def _cancel(task: asyncio.Future[Any]) -> None:
    task.cancel()
    with contextlib.suppress(BaseException):
        await task


@dataclass(frozen=True, slots=True)
class Race(Generic[T, U]):
    finished: bool  # ``main`` ended first; else ``rival`` did (and ``main`` was cancelled)
    result: T | None = None  # main's result
    rival: U | None = None  # rival's result


async def race(main: Awaitable[T], rival: Awaitable[U], name: str = "race") -> Race[T, U]:
    """Await ``main`` unless ``rival`` (e.g. a stop event, a denial) ends first: then cancel ``main``.
    ``main``'s exception propagates; cancelling the race cancels both."""
    task = spawn(main, name)
    other = spawn(rival, f"{name}:rival")
    try:
        await asyncio.wait({task, other}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        await _cancel(task)
        raise
    finally:
        if not other.done():
            await _cancel(other)
    if task.done():
        return Race(True, task.result())
    await _cancel(task)
    rival_result = other.result() if other.done() and not other.cancelled() and other.exception() is None else None
    return Race(False, rival=rival_result)


async def uncancellable(coro: Awaitable[None], name: str = "uncancellable") -> None:
    """Let ``coro`` finish even when the caller is cancelled (e.g. a change that the clean-up after a SIGINT
    must find complete), then pass the cancellation on."""
    task = spawn(coro, name)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise


class Background:
    """Helper tasks of one block (``async with Background() as bg: bg.start(...)``): cancelled and awaited
    when the block ends, however it ends; their failures are not the block's (they are logged by nobody and
    must report through what they share with it)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: list[asyncio.Task[Any]] = []

    def start(self, coro: Awaitable[Any], what: str = "task") -> asyncio.Task[Any]:
        task = spawn(coro, f"{self.name}:{what}")
        self._tasks.append(task)
        return task

    async def __aenter__(self) -> Background:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
