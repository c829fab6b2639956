"""msgpack wire format: every message is a map with a version field ``v``.

``encode`` packs a plain dict; ``decode`` unpacks and checks the version and the top-level type.
Typed records convert themselves with ``to_wire``/``from_wire``.
"""

from __future__ import annotations

from typing import Any

import msgpack

from drover.shared.errors import WireError

WIRE_VERSION = 1
MAX_MESSAGE = 8 * 1024 * 1024


def encode(body: dict[str, Any]) -> bytes:
    out: bytes = msgpack.packb({"v": WIRE_VERSION, **body}, use_bin_type=True)
    return out


def decode(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_MESSAGE:
        raise WireError(f"message of {len(data)} bytes is over the {MAX_MESSAGE} byte limit")
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise WireError(f"undecodable message: {exc}") from exc
    if not isinstance(body, dict):
        raise WireError(f"message is a {type(body).__name__}, expected a map")
    v = body.pop("v", None)
    if v != WIRE_VERSION:
        raise WireError(f"message version {v!r} is not supported (expected {WIRE_VERSION})")
    return body
