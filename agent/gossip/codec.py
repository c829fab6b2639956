"""Gossip datagrams: msgpack bodies signed by their sender (ed25519) inside a cluster-keyed HMAC envelope.

Layout of one datagram (at most ``max_packet`` bytes, 1400 by default so it fits an Ethernet MTU)::

    b"DG" | version (1 byte) | HMAC-SHA256(key, rest) (32 bytes) | ed25519 signature (64 bytes) | msgpack body

The signature is the sender's, over ``b"DG" + version + body``; the HMAC, with the cluster key, covers the
signature and the body. The HMAC is only an outer filter (foreign clusters and noise are dropped before any
signature check, which costs ~50x more); authenticity comes from the signature, checked by the node against
the sender's published key (``verify_sender``).

The body is a map ``{"t": kind, "f": sender, "s": seq, "n": nonce, "u": [update, ...]}`` plus ``"g"`` (the
target ``[name, address, port]`` of an indirect probe) and ``"r"`` (a full-state sync that wants one back).
``n`` is the sender's strictly increasing nonce (wall-clock microseconds) for the replay window. An update
is a compact array (see ``encode_update``) when it is a claim any member may make (a suspicion or a death
at the incarnation the origin itself announced), or a bin of ``signature (64) + packed array`` signed by
its origin, so that any member can forward it unchanged and every receiver can still check who made it.
Piggy-backed updates that do not fit one datagram are split across several (``pack_all``) or left for the
next one (``pack``).

Decoding checks, in order: size, magic and version, the MAC (constant-time), then msgpack and every
field's type and range. Each failure raises a distinct ``PacketError`` subclass so the node can count
it; nothing here raises anything else on bad input. The signatures are checked by the node.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import msgpack

from drover.agent.gossip.identity import SIG_LEN, NodeKey, Verifier
from drover.agent.gossip.state import BY_RANK, RANK, Endpoint, EndpointEntry, Member, Update

MAGIC = b"DG"
VERSION = 2
MAC_LEN = 32
HEADER_LEN = len(MAGIC) + 1 + MAC_LEN + SIG_LEN
DEFAULT_MAX_PACKET = 1400

MAX_NAME = 253
MAX_ADDRESS = 64
MAX_META_PAIRS = 16
MAX_META_STR = 128
MAX_U64 = 2**64 - 1
# Incarnations, epochs and counters: never past 2^63 - 1, so a forged 2^64 - 1 cannot pin a member dead for
# good or make a refutation (``incarnation + 1``) overflow what peers accept.
MAX_COUNTER = 2**63 - 1


class Kind(IntEnum):
    PING = 1
    ACK = 2
    PING_REQ = 3
    GOSSIP = 4
    SYNC = 5


class PacketError(Exception):
    """A datagram that is dropped; the subclass says why (for the stats)."""


class OversizeError(PacketError):
    pass


class AuthError(PacketError):
    pass


class VersionError(PacketError):
    pass


class MalformedError(PacketError):
    pass


class UnknownSenderError(PacketError):
    """The sender has no published gossip key (not a registered node, or not known here yet)."""


class SignatureError(PacketError):
    """The sender's signature does not verify: forged, tampered with, or signed with another key."""


@dataclass(frozen=True)
class Received:
    """One update as it came in: ``wire`` is its exact encoding (forwarded unchanged); ``sig``/``signed`` are
    its origin's signature and the bytes it covers, or None for an unsigned claim."""

    update: Update
    wire: bytes
    sig: bytes | None = None
    signed: bytes = b""


@dataclass
class Message:
    kind: Kind
    sender: str
    seq: int = 0
    updates: list[Update] = field(default_factory=list)
    target: tuple[str, str, int] | None = None
    reply: bool = False
    nonce: int = 0
    records: list[Received] = field(default_factory=list)
    sig: bytes = b""
    signed: bytes = b""


# ---------------------------------------------------------------------- updates
def encode_update(u: Update, signer: NodeKey | None = None) -> bytes:
    """``u`` as one element of a datagram's update array: signed by ``signer`` (its origin) when given."""
    row = _row(u)
    out: bytes = msgpack.packb(row, use_bin_type=True)
    if signer is None:
        return out
    signed: bytes = msgpack.packb(signer.sign(out) + out, use_bin_type=True)
    return signed


def _row(u: Update) -> list[Any]:
    if isinstance(u, Member):
        meta: list[str] = [s for pair in u.meta for s in pair]
        row: list[Any] = [0, u.name, u.address, u.port, u.incarnation, RANK[u.status], u.epoch, meta]
    else:
        e = u.endpoint
        row = [1, e.node, e.container, e.port, u.epoch, u.counter, u.present, e.service, e.address, e.revision, e.ready]
    return row


def _str(v: Any, limit: int, what: str) -> str:
    if type(v) is not str or not v or len(v) > limit:
        raise MalformedError(f"{what}: expected a string of 1-{limit} characters")
    return v


def _int(v: Any, lo: int, hi: int, what: str) -> int:
    if type(v) is not int or not lo <= v <= hi:
        raise MalformedError(f"{what}: expected an integer {lo}-{hi}")
    return v


def _bool(v: Any, what: str) -> bool:
    if type(v) is not bool:
        raise MalformedError(f"{what}: expected a boolean")
    return v


def decode_update(row: Any) -> Update:
    if type(row) is not list or not row:
        raise MalformedError("update: expected a non-empty array")
    tag = row[0]
    if tag == 0 and type(tag) is int:
        if len(row) != 8:
            raise MalformedError("member update: expected 8 fields")
        meta = row[7]
        if type(meta) is not list or len(meta) % 2 or len(meta) > 2 * MAX_META_PAIRS:
            raise MalformedError("member meta: expected a flat array of string pairs")
        strs = [_str(s, MAX_META_STR, "member meta") for s in meta]
        return Member(
            name=_str(row[1], MAX_NAME, "member name"),
            address=_str(row[2], MAX_ADDRESS, "member address"),
            port=_int(row[3], 1, 65535, "member port"),
            incarnation=_int(row[4], 0, MAX_COUNTER, "member incarnation"),
            status=BY_RANK[_int(row[5], 0, len(BY_RANK) - 1, "member status")],
            epoch=_int(row[6], 0, MAX_COUNTER, "member epoch"),
            meta=tuple(zip(strs[0::2], strs[1::2], strict=True)),
        )
    if tag == 1 and type(tag) is int:
        if len(row) != 11:
            raise MalformedError("endpoint update: expected 11 fields")
        ep = Endpoint(
            service=_str(row[7], MAX_NAME, "endpoint service"),
            address=_str(row[8], MAX_ADDRESS, "endpoint address"),
            port=_int(row[3], 1, 65535, "endpoint port"),
            node=_str(row[1], MAX_NAME, "endpoint node"),
            container=_str(row[2], MAX_NAME, "endpoint container"),
            revision=_int(row[9], 0, MAX_U64, "endpoint revision"),
            ready=_bool(row[10], "endpoint ready"),
        )
        return EndpointEntry(
            endpoint=ep,
            epoch=_int(row[4], 0, MAX_COUNTER, "endpoint epoch"),
            counter=_int(row[5], 0, MAX_COUNTER, "endpoint counter"),
            present=_bool(row[6], "endpoint present"),
        )
    raise MalformedError(f"update: unknown tag {tag!r}")


def decode_element(el: Any) -> Received:
    """One element of a datagram's update array: a plain row, or ``signature + packed row`` as a bin."""
    if type(el) is bytes:
        if len(el) <= SIG_LEN:
            raise MalformedError("signed update: too short")
        sig, packed = el[:SIG_LEN], el[SIG_LEN:]
        try:
            row = msgpack.unpackb(packed, raw=False, strict_map_key=True, use_list=True)
        except Exception as exc:  # msgpack raises several unrelated types
            raise MalformedError(f"signed update: undecodable: {exc}") from exc
        wire: bytes = msgpack.packb(el, use_bin_type=True)
        return Received(decode_update(row), wire, sig, packed)
    u = decode_update(el)
    return Received(u, msgpack.packb(el, use_bin_type=True))


def verify_record(rec: Received, public: bytes, verifier: Verifier) -> bool:
    return rec.sig is not None and verifier.verify(public, rec.sig, rec.signed)


def verify_sender(msg: Message, public: bytes | None, verifier: Verifier) -> None:
    """Raise unless ``msg`` is signed by the holder of ``public`` (the key its sender published)."""
    if public is None:
        raise UnknownSenderError(f"no gossip key known for {msg.sender!r}")
    if not verifier.verify(public, msg.sig, msg.signed):
        raise SignatureError(f"bad signature from {msg.sender!r}")


# ---------------------------------------------------------------------- datagrams
def _mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _array_header_len(n: int) -> int:
    return 1 if n < 16 else 3 if n < 65536 else 5


class _Frame:
    """The fixed part of a message, packed once; updates are appended as pre-encoded bytes."""

    def __init__(
        self, kind: Kind, sender: str, seq: int, nonce: int, target: tuple[str, str, int] | None, reply: bool
    ) -> None:
        pk = msgpack.Packer(use_bin_type=True)
        fields: dict[str, Any] = {"t": int(kind), "f": sender, "s": seq, "n": nonce}
        if target is not None:
            fields["g"] = list(target)
        if reply:
            fields["r"] = True
        head = [pk.pack_map_header(len(fields) + 1)]
        for k, v in fields.items():
            head.append(pk.pack(k))
            head.append(pk.pack(v))
        head.append(pk.pack("u"))
        self.head = b"".join(head)
        self.fixed = HEADER_LEN + len(self.head)

    def size(self, n: int, payload: int) -> int:
        return self.fixed + _array_header_len(n) + payload

    def seal(self, parts: Sequence[bytes], key: bytes, signer: NodeKey) -> bytes:
        array_header: bytes = msgpack.Packer().pack_array_header(len(parts))
        body = self.head + array_header + b"".join(parts)
        prefix = MAGIC + bytes((VERSION,))
        signed = signer.sign(prefix + body) + body
        return prefix + _mac(key, prefix + signed) + signed


def pack(
    kind: Kind,
    sender: str,
    seq: int,
    updates: Sequence[bytes],
    key: bytes,
    max_packet: int = DEFAULT_MAX_PACKET,
    *,
    signer: NodeKey,
    nonce: int,
    target: tuple[str, str, int] | None = None,
    reply: bool = False,
) -> tuple[bytes, list[int]]:
    """One datagram carrying as many of ``updates`` (pre-encoded, in order of preference) as fit.

    Returns the datagram and the indexes of the updates it carries. Raises ``ValueError`` if even the
    bare message does not fit ``max_packet``.
    """
    frame = _Frame(kind, sender, seq, nonce, target, reply)
    if frame.size(0, 0) > max_packet:
        raise ValueError(f"a bare {kind.name} message does not fit {max_packet} bytes")
    chosen: list[int] = []
    payload = 0
    for i, u in enumerate(updates):
        if frame.size(len(chosen) + 1, payload + len(u)) <= max_packet:
            chosen.append(i)
            payload += len(u)
    return frame.seal([updates[i] for i in chosen], key, signer), chosen


def pack_all(
    kind: Kind,
    sender: str,
    seq: int,
    updates: Sequence[bytes],
    key: bytes,
    max_packet: int = DEFAULT_MAX_PACKET,
    *,
    signer: NodeKey,
    nonce: int,
    reply: bool = False,
) -> list[bytes]:
    """Every update, split over as many datagrams as needed (``reply`` is set on the last one only).

    An update too large for any datagram on its own is skipped (``encode_update`` of validated records
    never produces one).
    """
    last = _Frame(kind, sender, seq, nonce, None, reply)
    groups: list[list[bytes]] = [[]]
    payload = 0
    for u in updates:
        if last.size(1, len(u)) > max_packet:
            continue
        if last.size(len(groups[-1]) + 1, payload + len(u)) > max_packet:
            groups.append([])
            payload = 0
        groups[-1].append(u)
        payload += len(u)
    # One nonce for several datagrams would make all but the first look replayed: number them on from it.
    out = [_Frame(kind, sender, seq, nonce + i, None, False).seal(g, key, signer) for i, g in enumerate(groups[:-1])]
    out.append(_Frame(kind, sender, seq, nonce + len(groups) - 1, None, reply).seal(groups[-1], key, signer))
    return out


def decode(data: bytes, key: bytes, max_packet: int = DEFAULT_MAX_PACKET) -> Message:
    if len(data) > max_packet:
        raise OversizeError(f"datagram of {len(data)} bytes is over {max_packet}")
    if len(data) < HEADER_LEN or data[: len(MAGIC)] != MAGIC:
        raise MalformedError("not a gossip datagram")
    if data[len(MAGIC)] != VERSION:
        raise VersionError(f"gossip version {data[len(MAGIC)]} is not supported (expected {VERSION})")
    cut = len(MAGIC) + 1 + MAC_LEN
    prefix, mac, sig, body = data[: len(MAGIC) + 1], data[len(MAGIC) + 1 : cut], data[cut:HEADER_LEN], data[HEADER_LEN:]
    if not hmac.compare_digest(mac, _mac(key, prefix + data[cut:])):
        raise AuthError("bad MAC")
    try:
        raw = msgpack.unpackb(body, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise MalformedError(f"undecodable body: {exc}") from exc
    if type(raw) is not dict:
        raise MalformedError("body: expected a map")
    try:
        kind = Kind(_int(raw.get("t"), 1, max(Kind), "kind"))
    except ValueError as exc:
        raise MalformedError(str(exc)) from exc
    rows = raw.get("u", [])
    if type(rows) is not list:
        raise MalformedError("updates: expected an array")
    target: tuple[str, str, int] | None = None
    g = raw.get("g")
    if g is not None:
        if type(g) is not list or len(g) != 3:
            raise MalformedError("target: expected [name, address, port]")
        target = (
            _str(g[0], MAX_NAME, "target name"),
            _str(g[1], MAX_ADDRESS, "target address"),
            _int(g[2], 1, 65535, "target port"),
        )
    elif kind is Kind.PING_REQ:
        raise MalformedError("ping-req without a target")
    records = [decode_element(r) for r in rows]
    return Message(
        kind=kind,
        sender=_str(raw.get("f"), MAX_NAME, "sender"),
        seq=_int(raw.get("s", 0), 0, MAX_U64, "seq"),
        updates=[r.update for r in records],
        target=target,
        reply=_bool(raw.get("r", False), "reply"),
        nonce=_int(raw.get("n"), 0, MAX_COUNTER, "nonce"),
        records=records,
        sig=sig,
        signed=prefix + body,
    )
