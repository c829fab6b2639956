"""Following a KV bucket for discovery: ``follow_bucket`` hands the whole current content to ``apply`` after
the initial snapshot and after every change, and re-creates the watch every ``RELIST_INTERVAL`` seconds (a
fresh snapshot heals missed updates and NATS restarts). While NATS is away nothing is applied, so the last
known state stays in force."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

RELIST_INTERVAL = 5.0  # the KV watches are re-created (a full re-list) this often


async def follow_bucket(
    get_kv: Callable[[], Any],
    apply: Callable[[Mapping[str, bytes]], Awaitable[None]],
    log: structlog.typing.FilteringBoundLogger,
) -> None:
    """Watch a bucket; ``apply(all current values)`` after the initial snapshot and every change."""
    import nats.errors

    loop = asyncio.get_running_loop()
    while True:
        try:
            async with asyncio.timeout(5):
                watcher = await get_kv().watchall()
        except Exception as exc:
            log.debug("watch not (re)created", error=repr(exc))
            await asyncio.sleep(1.0)
            continue
        values: dict[str, bytes] = {}
        loaded = False
        deadline = loop.time() + RELIST_INTERVAL
        try:
            while loop.time() < deadline:
                try:
                    entry = await watcher.updates(timeout=1.0)
                except nats.errors.TimeoutError:
                    continue
                if entry is None:
                    if not loaded:
                        loaded = True
                        await apply(values)
                    continue
                if entry.operation in ("DEL", "PURGE") or not entry.value:
                    values.pop(entry.key, None)
                else:
                    values[entry.key] = entry.value
                if loaded:
                    await apply(values)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("watch failed", error=repr(exc))
            await asyncio.sleep(0.5)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()


async def read_all(kv: Any) -> dict[str, bytes]:
    """Every live value of a bucket (empty when it has no keys)."""
    from nats.js.errors import KeyNotFoundError, NoKeysError

    try:
        keys = await kv.keys()
    except NoKeysError:
        return {}
    out: dict[str, bytes] = {}
    for k in keys:
        with contextlib.suppress(KeyNotFoundError):
            e = await kv.get(k)
            if e.value:
                out[k] = e.value
    return out
