"""Running a coroutine until SIGINT/SIGTERM: the one place the CLI turns signals into a cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable
from typing import TypeVar

from drover.shared.aio import spawn

T = TypeVar("T")
SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def run_until_signal(main: Awaitable[T]) -> T | None:
    """Await ``main`` until it ends, or until SIGINT/SIGTERM cancels it (its own clean-up runs on
    cancellation) — then the result is None. A second signal while shutting down is ignored."""
    loop = asyncio.get_running_loop()
    task = spawn(main, "main")
    stopping = False

    def stop() -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        task.cancel()

    for sig in SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop)
    try:
        return await task
    except asyncio.CancelledError:
        if stopping:
            return None
        raise
    finally:
        for sig in SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
