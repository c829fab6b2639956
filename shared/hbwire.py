"""Heartbeats on the wire: compact per-container entries, split into bounded parts (pure).

A full heartbeat of a node with 10,000 replicas in the record format (``Heartbeat.to_wire``) is about 2.7 MB,
over NATS's default 1 MB ``max_payload``. Agents therefore send each heartbeat as one or more *parts* on the
node's own subject ``drover.<c>.hb.<node>``, each at most ``limit`` bytes:

    {"v": 1, "node", "boot_id", "seq", "time", "generation", "part": k, "parts": n, "cs": <bin>,
     "service_rps": {...}  (part 0 only)}

``cs`` is a msgpack array of compact container entries, each itself packed (a bin): short keys, default
values left out, the container ``name`` left out when it is the usual ``drover-<service>-<id>``, the state
as a small integer and ``message`` cut to ``MESSAGE_MAX`` characters — so no entry can be bigger than a
part. A part holds whole entries; an entry is packed once and the parts are cut on exact byte counts, so a
part is never over ``limit`` (``split`` raises if the header alone is, which the sender reports).

``cs`` stays packed bytes inside the message on purpose: a receiver compares a node's parts byte for byte
with the ones it decoded last and decodes only what changed (the common heartbeat, where nothing changed,
costs one small decode and a comparison).

The record format (``containers``: a list of full ``ContainerStatus`` maps, one message) is what agents sent
before; receivers still accept it (``is_parts``), so agents of the previous version keep being heard.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgpack

from drover.shared import wire
from drover.shared.errors import WireError
from drover.shared.models import ContainerState

MESSAGE_MAX = 512  # characters of a container's message kept in a heartbeat (the rest is in the agent's log)
PART_MAX = 256 * 1024  # bytes per part, at most (also under the server's max_payload): small messages keep
# the connection's other traffic moving and bound the receiver's work per message
MAX_PARTS = 256
_STATES = list(ContainerState)
_STATE_CODE = {str(s): i for i, s in enumerate(_STATES)}
# wire dict key -> compact key; values equal to the default are left out
_KEYS: tuple[tuple[str, str, Any], ...] = (
    ("container_id", "c", ""),
    ("revision", "r", 0),
    ("ready", "rd", False),
    ("restarts", "rs", 0),
    ("host_port", "hp", None),
    ("ports", "p", {}),
    ("started_at", "sa", None),
    ("exit_code", "x", None),
    ("cpu_percent", "cp", None),
    ("memory_percent", "mp", None),
)


def default_name(service: str, replica_id: str) -> str:
    return f"drover-{service}-{replica_id}"


def pack_container(status: Mapping[str, Any]) -> bytes:
    """One ``ContainerStatus`` (as its wire dict, ``model_dump(mode="json")``) as a compact entry."""
    rid, service = str(status["id"]), str(status.get("service", ""))
    out: dict[str, Any] = {"i": rid, "s": service, "st": _STATE_CODE.get(str(status.get("state", "pending")), 0)}
    name = status.get("name", "")
    if name != default_name(service, rid):
        out["n"] = name
    for long, short, default in _KEYS:
        value = status.get(long, default)
        if value != default:
            out[short] = value
    message = status.get("message", "")
    if message:
        out["m"] = message[:MESSAGE_MAX]
    packed: bytes = msgpack.packb(out, use_bin_type=True)
    return packed


def unpack_container(entry: Any) -> dict[str, Any]:
    """A compact entry back into a ``ContainerStatus`` wire dict (types are checked by the model after)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("i"), str):
        raise WireError("heartbeat container entry is not a map with an id")
    rid, service = entry["i"], entry.get("s", "")
    code = entry.get("st", 0)
    if not isinstance(code, int) or not 0 <= code < len(_STATES):
        raise WireError(f"heartbeat container {rid!r}: unknown state {code!r}")
    out: dict[str, Any] = {
        "id": rid, "service": service, "state": str(_STATES[code]),
        "name": entry.get("n", default_name(str(service), rid)), "message": entry.get("m", ""),
    }
    for long, short, default in _KEYS:
        out[long] = entry.get(short, default)
    return out


def _bin(entry: bytes) -> bytes:
    """A packed entry as a msgpack bin (its length header, then the bytes)."""
    n = len(entry)
    if n < 1 << 8:
        return b"\xc4" + n.to_bytes(1, "big") + entry
    if n < 1 << 16:
        return b"\xc5" + n.to_bytes(2, "big") + entry
    return b"\xc6" + n.to_bytes(4, "big") + entry


def _array(items: Sequence[bytes]) -> bytes:
    """A msgpack array of already packed items (concatenated behind the array header)."""
    n = len(items)
    if n < 16:
        head = bytes([0x90 | n])
    elif n < 1 << 16:
        head = b"\xdc" + n.to_bytes(2, "big")
    else:
        head = b"\xdd" + n.to_bytes(4, "big")
    return head + b"".join(items)


def split(header: Mapping[str, Any], entries: Sequence[bytes], limit: int) -> list[bytes]:
    """The parts of one heartbeat: ``header`` (node, boot_id, seq, time, generation, service_rps) and the
    packed container ``entries``, each part at most ``limit`` bytes. Raises ``WireError`` when even an empty
    part (the header) does not fit or more than ``MAX_PARTS`` would be needed."""
    rps = header.get("service_rps") or {}
    base = {k: v for k, v in header.items() if k != "service_rps"}
    # the envelope of the biggest part: widest part numbers, an empty bin whose length header is the widest
    empty = len(wire.encode({**base, "part": MAX_PARTS, "parts": MAX_PARTS, "cs": b"", "service_rps": rps}))
    room = limit - empty - 5 - 5  # bin32 length header, array32 header
    if room <= 0:
        raise WireError(f"heartbeat header of {empty} bytes does not fit a part of {limit} bytes")
    groups: list[list[bytes]] = [[]]
    size = 0
    for entry in entries:
        e = _bin(entry)
        if len(e) > room:
            raise WireError(f"heartbeat container entry of {len(e)} bytes is over the part size")
        if size + len(e) > room and groups[-1]:
            groups.append([])
            size = 0
        groups[-1].append(e)
        size += len(e)
    if len(groups) > MAX_PARTS:
        raise WireError(f"heartbeat needs {len(groups)} parts, more than {MAX_PARTS}")
    out = []
    for k, g in enumerate(groups):
        body = {**base, "part": k, "parts": len(groups), "cs": _array(g)}
        if k == 0:
            body["service_rps"] = rps
        out.append(wire.encode(body))
    return out


def is_parts(body: Mapping[str, Any]) -> bool:
    """Whether a decoded heartbeat message is a part (this format) rather than a record-format heartbeat."""
    return "cs" in body


def part_numbers(body: Mapping[str, Any]) -> tuple[int, int]:
    """``(part, parts)`` of a part, checked."""
    part, parts = body.get("part"), body.get("parts")
    if not isinstance(part, int) or not isinstance(parts, int) or not 0 <= part < parts <= MAX_PARTS:
        raise WireError(f"heartbeat part {part!r} of {parts!r} is out of range")
    if not isinstance(body.get("cs"), bytes):
        raise WireError("heartbeat part: 'cs' is not bytes")
    return part, parts


def entries(blob: bytes) -> list[bytes]:
    """The packed container entries of one part's ``cs`` (each still packed: a receiver decodes only the
    entries it has not seen before, ``decode_entry``)."""
    try:
        items = msgpack.unpackb(blob, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise WireError(f"heartbeat part: undecodable containers: {exc}") from exc
    if not isinstance(items, list) or not all(isinstance(e, bytes) for e in items):
        raise WireError("heartbeat part: containers are not a list of packed entries")
    return items


def decode_entry(entry: bytes) -> dict[str, Any]:
    """One packed entry as a ``ContainerStatus`` wire dict."""
    try:
        body = msgpack.unpackb(entry, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise WireError(f"heartbeat part: undecodable container entry: {exc}") from exc
    return unpack_container(body)


def encode(header: Mapping[str, Any], statuses: Iterable[Mapping[str, Any]], limit: int) -> list[bytes]:
    """``split`` of wire-dict statuses (packing each one; callers sending the same statuses every second
    keep their packed entries instead)."""
    return split(header, [pack_container(s) for s in statuses], limit)


def part_limit(max_payload: int) -> int:
    """The part size for a server's ``max_payload``."""
    return min(PART_MAX, max_payload)
