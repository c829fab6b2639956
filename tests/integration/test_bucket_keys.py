"""``shared/bus.bucket_keys`` on a real nats-server: every key with an entry, from the stream's subject list
(nats-py's ``keys()`` can end its listing before the first entries arrive)."""

from __future__ import annotations

import nats
import pytest
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyNotFoundError

from drover.shared.bus import bucket_keys
from tests.fixtures import NatsServer

pytestmark = [pytest.mark.nats]


async def test_bucket_keys_lists_every_key_deleted_ones_included(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        kv = await nc.jetstream().create_key_value(KeyValueConfig(bucket="keys", storage=StorageType.FILE))
        assert await bucket_keys(kv) == []  # empty: a list, not an error
        for i in range(50):
            await kv.put(f"k{i:02d}", b"v")
        await kv.put("k00", b"again")  # two entries, one key
        await kv.delete("k01")  # a delete marker: listed, and get tells
        await kv.create("x.y", b"dotted")
        keys = await bucket_keys(kv)
        assert keys == sorted([f"k{i:02d}" for i in range(50)] + ["x.y"])
        with pytest.raises(KeyNotFoundError):  # nats-py's KeyDeletedError is one
            await kv.get("k01")
    finally:
        await nc.close()
