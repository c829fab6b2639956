"""The cluster's shared gossip key (HMAC secret that keeps foreign datagrams out of the agents' gossip).

Created once (by the controller or the first agent, whoever asks first) as 32 random bytes and kept in the
cluster's ``config`` bucket under the key ``gossip-key`` (its own bucket, so no node name can collide with
it), as a wire map ``{"v": 1, "gossip_key": bytes}``.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from drover.shared import wire
from drover.shared.errors import TemporaryError, WireError

KEY_NAME = "gossip-key"
KEY_BYTES = 32


def encode_key(key: bytes) -> bytes:
    return wire.encode({"gossip_key": key})


def decode_key(data: bytes) -> bytes:
    body = wire.decode(data)
    key = body.get("gossip_key")
    if not isinstance(key, bytes) or len(key) < 16:
        raise WireError("gossip-key entry holds no usable key")
    return key


async def cluster_key(store: Any, *, attempts: int = 20) -> bytes:
    """The cluster key from ``store.config``; created (first writer wins) when absent.

    Retries while JetStream is briefly unavailable; raises ``TemporaryError`` when it never answers.
    """
    delay = 0.1
    last: BaseException | None = None
    for _ in range(attempts):
        try:
            try:
                entry = await store.config.get(KEY_NAME)
                if entry.value:
                    return decode_key(entry.value)
            except KeyNotFoundError:
                pass
            key = secrets.token_bytes(KEY_BYTES)
            try:
                await store.config.create(KEY_NAME, encode_key(key))
                return key
            except KeyWrongLastSequenceError:
                continue  # someone else created it first: read theirs
        except WireError:
            raise
        except Exception as exc:  # JetStream not ready / NATS away: retry
            last = exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
    raise TemporaryError(f"cannot read or create the cluster's gossip key: {last!r}")
