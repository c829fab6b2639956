"""``shared/bus.bucket_keys`` and ``bucket_is_empty`` on a real nats-server: every key with an entry, from the
stream's subject list (nats-py's ``keys()`` can end its listing before the first entries arrive); an informer
lists a bucket whole."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyNotFoundError

from drover.shared.bus import bucket_is_empty, bucket_keys
from drover.shared.informer import Informer
from tests.fixtures import NatsServer

pytestmark = [pytest.mark.nats]


async def test_bucket_keys_lists_every_key_deleted_ones_included(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        kv = await nc.jetstream().create_key_value(KeyValueConfig(bucket="keys", storage=StorageType.FILE))
        assert await bucket_keys(kv) == []  # empty: a list, not an error
        assert await bucket_is_empty(kv)
        for i in range(50):
            await kv.put(f"k{i:02d}", b"v")
        await kv.put("k00", b"again")  # two entries, one key
        await kv.delete("k01")  # a delete marker: listed, and get tells
        await kv.create("x.y", b"dotted")
        keys = await bucket_keys(kv)
        assert keys == sorted([f"k{i:02d}" for i in range(50)] + ["x.y"])
        assert not await bucket_is_empty(kv)
        inf: Informer[bytes] = Informer("keys", kv, bytes, on_change=lambda k, v, r: None, poll=0.05)
        task = asyncio.ensure_future(inf.run())
        try:
            await asyncio.wait_for(inf.ready.wait(), 10)
            assert sorted(inf.items) == sorted(k for k in keys if k != "k01")  # the delete marker: deleted
        finally:
            task.cancel()
        with pytest.raises(KeyNotFoundError):  # nats-py's KeyDeletedError is one
            await kv.get("k01")
    finally:
        await nc.close()
