"""Following the services and nodes buckets for discovery: each is read through the shared ``Informer``
(``shared/informer.py``), relisted every ``RELIST_INTERVAL`` seconds and after a reconnect; the informer flags
a change and ``apply_on_change`` applies the whole current content. While NATS is away nothing changes, so the
last known state stays in force."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

RELIST_INTERVAL = 5.0  # the KV watches are re-created (a full re-list) this often


async def apply_on_change(dirty: asyncio.Event, apply: Callable[[], Awaitable[None]]) -> None:
    """Run ``apply()`` after every change an informer signalled through ``dirty`` (changes that come while it
    runs are coalesced into one more run)."""
    while True:
        await dirty.wait()
        dirty.clear()
        await apply()
