"""Supervised background tasks: every long-running coroutine is started here, named, and watched.

A supervised task that crashes is logged and restarted after a backoff (``restart=True``) or makes the
supervisor's ``failed`` future complete so the process can stop (``restart=False``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger("drover.tasks")


class Supervisor:
    def __init__(self, name: str):
        self.name = name
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self.failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    def start(
        self,
        name: str,
        factory: Callable[[], Awaitable[Any]],
        *,
        restart: bool = True,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
    ) -> asyncio.Task[Any]:
        """Run ``factory()`` as task ``name``; restart it with backoff when it crashes (if ``restart``)."""
        if name in self._tasks and not self._tasks[name].done():
            raise RuntimeError(f"task {name!r} already running")

        async def runner() -> None:
            delay = backoff
            while True:
                try:
                    await factory()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.error("task crashed", task=name, supervisor=self.name, error=repr(exc), exc_info=True)
                    if not restart:
                        if not self.failed.done():
                            self.failed.set_result(exc)
                        return
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, max_backoff)

        task = asyncio.get_running_loop().create_task(runner(), name=f"{self.name}:{name}")
        self._tasks[name] = task
        return task

    def spawn(self, name: str, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """A one-shot task (not restarted), still named, tracked and logged if it fails."""

        async def once() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("task failed", task=name, supervisor=self.name, error=repr(exc), exc_info=True)

        task = asyncio.get_running_loop().create_task(once(), name=f"{self.name}:{name}")
        self._tasks[f"{name}#{id(task)}"] = task
        task.add_done_callback(lambda t: self._tasks.pop(f"{name}#{id(t)}", None))
        return task

    def names(self) -> list[str]:
        return [n for n, t in self._tasks.items() if not t.done()]

    async def stop(self, timeout: float = 10.0) -> None:
        """Cancel every task and wait for them; a task that swallowed its cancellation is cancelled again."""
        tasks = [t for t in self._tasks.values() if not t.done()]
        deadline = asyncio.get_running_loop().time() + timeout
        while tasks:
            for t in tasks:
                t.cancel()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                log.error("tasks did not stop", supervisor=self.name, tasks=[t.get_name() for t in tasks])
                break
            _, pending = await asyncio.wait(tasks, timeout=min(0.5, left))
            tasks = list(pending)
        for t in self._tasks.values():
            if t.done() and not t.cancelled():
                with contextlib.suppress(BaseException):
                    t.exception()
        self._tasks.clear()


async def cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has ended (their errors are not re-raised)."""
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
