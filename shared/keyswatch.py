"""A watch of a set of KV keys (not the whole bucket): one ordered consumer filtered on those keys' subjects.

nats-py's ``KeyValue.watch`` takes one pattern, and NATS wildcards match whole tokens, so "the keys ``P-1`` …
``P-5000``" cannot be said with one; nats-server (2.10+) takes a list of filter subjects on one consumer
instead. A hollow fleet watches its own nodes' assignments this way, so the server sends it nothing about
other nodes (another fleet's, or real agents'). The watcher is nats-py's own ``KeyWatcher`` and delivers the
same entries (the last value of each key first, then a ``None`` marker, then every change), with the same
ordered-consumer recovery (a gap re-creates the consumer with the same filters).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from nats.js import api
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE, KeyValue

_MARKER = "Nats-Marker-Reason"  # nats-server 2.11+: expiry/removal markers


async def watch_keys(kv: KeyValue, keys: Sequence[str], inactive_threshold: float = 300.0) -> KeyValue.KeyWatcher:
    pre: str = kv._pre  # ("$KV.<bucket>.": what nats-py's own watch prefixes keys with)
    watcher = KeyValue.KeyWatcher(kv)  # type: ignore[no-untyped-call]
    setup: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    async def on_msg(msg: Any) -> None:
        if not setup.done():
            await asyncio.wait_for(asyncio.shield(setup), timeout=10)
        meta = msg.metadata
        headers = msg.header or {}
        op = headers.get(KV_OP)
        reason = headers.get(_MARKER)
        if op is None and reason in ("MaxAge", "Purge"):
            op = KV_PURGE
        elif op is None and reason == "Remove":
            op = KV_DEL
        entry = KeyValue.Entry(bucket=kv._name, key=msg.subject[len(pre):], value=msg.data,
                               revision=meta.sequence.stream, delta=meta.num_pending, created=meta.timestamp,
                               operation=op)
        await watcher._updates.put(entry)
        if meta.num_pending == 0 and not watcher._init_done:
            await watcher._updates.put(None)
            watcher._init_done = True

    config = api.ConsumerConfig(filter_subjects=[f"{pre}{k}" for k in keys])
    sub = await kv._js.subscribe(
        f"{pre}>", stream=kv._stream, cb=on_msg, ordered_consumer=True, config=config,
        deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT, inactive_threshold=inactive_threshold,
    )
    watcher._sub = sub
    try:
        info = await sub.consumer_info()
        setup.set_result(True)
        if info.num_pending == 0 and sub.delivered == 0:
            await watcher._updates.put(None)  # (nothing stored for these keys yet)
            watcher._init_done = True
    except Exception:
        setup.cancel()
        await sub.unsubscribe()
        raise
    return watcher


__all__ = ["watch_keys"]
