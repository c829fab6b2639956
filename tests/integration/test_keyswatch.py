"""A watch of some keys of a bucket (a hollow fleet's nodes): their last values, then their changes, and
nothing about the other keys, on a real nats-server."""

from __future__ import annotations

import asyncio

from drover.shared import bus
from drover.shared.keyswatch import watch_keys
from tests.fixtures.nats import NatsServer


async def test_watch_keys_sees_only_its_keys(nats_server: NatsServer, cluster_name: str) -> None:
    nc = await bus.connect(nats_server.url, name="test")
    try:
        kv = (await bus.open_store(nc, cluster_name)).assignments
        await kv.put("p-1", b"one")
        await kv.put("q-1", b"other")
        await kv.put("p-1", b"one again")
        watcher = await watch_keys(kv, ["p-1", "p-2", "p-10"])

        async def next_entry() -> object:
            return await asyncio.wait_for(watcher.updates(timeout=10), 10)  # type: ignore[no-untyped-call]

        first = await next_entry()
        assert first is not None and (first.key, first.value) == ("p-1", b"one again")  # type: ignore[attr-defined]
        assert await next_entry() is None  # the stored values are all in
        await kv.put("q-1", b"not ours")
        await kv.put("p-1x", b"not ours either")  # (a key that merely starts like one of ours)
        await kv.put("p-2", b"two")
        await kv.delete("p-1")
        got = [await next_entry(), await next_entry()]
        assert [(e.key, e.value, e.operation) for e in got] == [  # type: ignore[attr-defined]
            ("p-2", b"two", None), ("p-1", b"", "DEL"),
        ]
        await watcher.stop()  # type: ignore[no-untyped-call]
    finally:
        await nc.close()


async def test_watch_keys_of_an_empty_bucket_is_loaded_at_once(nats_server: NatsServer, cluster_name: str) -> None:
    nc = await bus.connect(nats_server.url, name="test")
    try:
        kv = (await bus.open_store(nc, cluster_name)).assignments
        watcher = await watch_keys(kv, ["p-1"])
        assert await asyncio.wait_for(watcher.updates(timeout=10), 10) is None  # type: ignore[no-untyped-call]
        await kv.put("p-1", b"one")
        entry = await asyncio.wait_for(watcher.updates(timeout=10), 10)  # type: ignore[no-untyped-call]
        assert entry is not None and entry.value == b"one"
        await watcher.stop()  # type: ignore[no-untyped-call]
    finally:
        await nc.close()
