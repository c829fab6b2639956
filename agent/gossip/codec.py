"""Gossip datagrams: msgpack bodies authenticated per pair of nodes (a keyed MAC), or signed by their sender.

Layout of one datagram (at most ``max_packet`` bytes, 1400 by default so it fits an Ethernet MTU)::

    b"DG" | version (1) | mode (1) | sender length (1) | sender (UTF-8) | auth | msgpack body

``mode`` says what ``auth`` is:

* ``PAIR`` (``b"P"``): BLAKE2b-128 keyed with the key of the (sender, receiver) pair (``pairkeys.py``) over
  everything else. Only those two nodes can compute it, so it proves the sender to the receiver, and the
  sender's name is under it. It costs a few µs; a datagram for several receivers gets one MAC each.
* ``SIGNED`` (``b"S"``): HMAC-SHA256 with the cluster key (32), then the sender's ed25519 signature (64) over
  the header and the body. For a receiver that may not hold the sender's key yet, or holds an old one: a new
  or re-keyed node's sync request, and the state sent back to such a node. The HMAC is an outer filter
  (foreign clusters and noise are dropped before any signature check, which costs ~50x more), and lets such a
  receiver answer a sync request it cannot authenticate; anything merged needs the signature.

The body is a map ``{"t": kind, "s": seq, "n": nonce, "u": [update, ...]}`` plus ``"g"`` (the target ``[name,
address, port]`` of an indirect probe) and ``"r"`` (a full-state sync that wants one back). ``n`` is the
sender's strictly increasing nonce (wall-clock microseconds) for the replay window. An update is a compact
array (see ``encode_update``) when it is a claim any member may make (a suspicion or a death at the
incarnation the origin itself announced), or a bin of ``signature (64) + packed array`` signed by its origin,
so that any member can forward it unchanged and every receiver can still check who made it. Piggy-backed
updates that do not fit one datagram are split across several (``pack_all``) or left for the next one
(``pack``); room is always left for the larger (signed) header, so a body can be sealed either way.

Decoding: ``open_envelope`` checks size, magic, version, mode and sender; the receiver then checks the
pair MAC (``pair_ok``) or the cluster MAC (``cluster_ok``) and the signature (``signature_ok``), and only then
``decode_body`` parses msgpack and every field's type and range. Each failure raises a distinct
``PacketError`` subclass so the node can count it; nothing here raises anything else on bad input.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import msgpack

from drover.agent.gossip.identity import SIG_LEN, NodeKey, Verifier
from drover.agent.gossip.state import BY_RANK, RANK, Endpoint, EndpointEntry, Member, Update

MAGIC = b"DG"
VERSION = 3  # 2: every datagram ed25519-signed (dropped and counted as dropped_version now)
MAC_LEN = 32  # the cluster HMAC of a SIGNED datagram
PAIR_MAC_LEN = 16
DEFAULT_MAX_PACKET = 1400

MAX_NAME = 253
MAX_ADDRESS = 64
MAX_META_PAIRS = 16
MAX_META_STR = 128
MAX_U64 = 2**64 - 1
# Incarnations, epochs and counters: never past 2^63 - 1, so a forged 2^64 - 1 cannot pin a member dead for
# good or make a refutation (``incarnation + 1``) overflow what peers accept.
MAX_COUNTER = 2**63 - 1


class Mode(IntEnum):
    PAIR = ord("P")
    SIGNED = ord("S")


AUTH_LEN = {Mode.PAIR: PAIR_MAC_LEN, Mode.SIGNED: MAC_LEN + SIG_LEN}


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
    """The sender's pair MAC or signature does not verify: forged, tampered with, or made with another key."""


@dataclass(frozen=True)
class Received:
    """One update as it came in: ``wire`` is its exact encoding (forwarded unchanged); ``sig``/``signed`` are
    its origin's signature and the bytes it covers, or None for an unsigned claim."""

    update: Update
    wire: bytes
    sig: bytes | None = None
    signed: bytes = b""


@dataclass(frozen=True)
class Envelope:
    """A datagram's outside: who claims to send it and how it is authenticated; ``body`` not parsed yet."""

    mode: Mode
    sender: str
    head: bytes  # magic .. sender: covered by the MAC and the signature
    auth: bytes
    body: bytes


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


# Records are forwarded unchanged, so a node receives the same element many times (piggy-backed by several
# peers, and in every full-state sync): the outcome of decoding one (an immutable ``Received``) is kept for
# the last DECODED_LIMIT distinct elements of the process, keyed by their exact encoding.
DECODED_LIMIT = 8192
_decoded: OrderedDict[bytes, Received] = OrderedDict()


def decode_element(el: Any) -> Received:
    """One element of a datagram's update array: a plain row, or ``signature + packed row`` as a bin."""
    if type(el) is not bytes and type(el) is not list:
        raise MalformedError("update: expected an array or a signed bin")
    wire: bytes = msgpack.packb(el, use_bin_type=True)
    hit = _decoded.get(wire)
    if hit is not None:
        _decoded.move_to_end(wire)
        return hit
    rec = _decode_element(el, wire)
    _decoded[wire] = rec
    if len(_decoded) > DECODED_LIMIT:
        _decoded.popitem(last=False)
    return rec


def _decode_element(el: Any, wire: bytes) -> Received:
    if type(el) is bytes:
        if len(el) <= SIG_LEN:
            raise MalformedError("signed update: too short")
        sig, packed = el[:SIG_LEN], el[SIG_LEN:]
        try:
            row = msgpack.unpackb(packed, raw=False, strict_map_key=True, use_list=True)
        except Exception as exc:  # msgpack raises several unrelated types
            raise MalformedError(f"signed update: undecodable: {exc}") from exc
        return Received(decode_update(row), wire, sig, packed)
    return Received(decode_update(el), wire)


def verify_record(rec: Received, public: bytes, verifier: Verifier) -> bool:
    return rec.sig is not None and verifier.verify(public, rec.sig, rec.signed)


# ---------------------------------------------------------------------- datagrams
def _head(mode: Mode, sender: str) -> bytes:
    name = sender.encode()
    if not 0 < len(name) <= MAX_NAME:
        raise ValueError(f"sender name of {len(name)} bytes (1-{MAX_NAME})")
    return MAGIC + bytes((VERSION, mode, len(name))) + name


def header_len(mode: Mode, sender: str) -> int:
    return len(MAGIC) + 3 + len(sender.encode()) + AUTH_LEN[mode]


def _mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _pair_mac(pair_key: bytes, head: bytes, body: bytes) -> bytes:
    h = hashlib.blake2b(key=pair_key, digest_size=PAIR_MAC_LEN)
    h.update(head)
    h.update(body)
    return h.digest()


def seal_pair(sender: str, body: bytes, pair_key: bytes) -> bytes:
    """``body`` from ``sender`` for the one peer that shares ``pair_key`` with it."""
    head = _head(Mode.PAIR, sender)
    return head + _pair_mac(pair_key, head, body) + body


def seal_signed(sender: str, body: bytes, key: bytes, signer: NodeKey) -> bytes:
    """``body`` signed by ``sender`` (``signer``) inside the cluster ``key``'s HMAC: for any member."""
    head = _head(Mode.SIGNED, sender)
    signed = signer.sign(head + body) + body
    return head + _mac(key, head + signed) + signed


def open_envelope(data: bytes, max_packet: int = DEFAULT_MAX_PACKET) -> Envelope:
    if len(data) > max_packet:
        raise OversizeError(f"datagram of {len(data)} bytes is over {max_packet}")
    if len(data) < len(MAGIC) + 3 or data[: len(MAGIC)] != MAGIC:
        raise MalformedError("not a gossip datagram")
    if data[len(MAGIC)] != VERSION:
        raise VersionError(f"gossip version {data[len(MAGIC)]} is not supported (expected {VERSION})")
    try:
        mode = Mode(data[len(MAGIC) + 1])
    except ValueError as exc:
        raise MalformedError(f"unknown authentication mode {data[len(MAGIC) + 1]}") from exc
    end = len(MAGIC) + 3 + data[len(MAGIC) + 2]
    if len(data) < end + AUTH_LEN[mode]:
        raise MalformedError("truncated header")
    try:
        sender = _str(data[len(MAGIC) + 3 : end].decode(), MAX_NAME, "sender")
    except UnicodeDecodeError as exc:
        raise MalformedError("sender: not UTF-8") from exc
    cut = end + AUTH_LEN[mode]
    return Envelope(mode, sender, data[:end], data[end:cut], data[cut:])


def pair_ok(env: Envelope, pair_key: bytes) -> bool:
    return env.mode is Mode.PAIR and hmac.compare_digest(env.auth, _pair_mac(pair_key, env.head, env.body))


def cluster_ok(env: Envelope, key: bytes) -> bool:
    if env.mode is not Mode.SIGNED:
        return False
    return hmac.compare_digest(env.auth[:MAC_LEN], _mac(key, env.head + env.auth[MAC_LEN:] + env.body))


def signature_ok(env: Envelope, public: bytes, verifier: Verifier) -> bool:
    """The sender's signature of a SIGNED datagram (whose cluster MAC was checked) against ``public``."""
    return env.mode is Mode.SIGNED and verifier.verify(public, env.auth[MAC_LEN:], env.head + env.body, cache=False)


def _array_header_len(n: int) -> int:
    return 1 if n < 16 else 3 if n < 65536 else 5


class _Frame:
    """The fixed part of a body, packed once; updates are appended as pre-encoded bytes. Room is kept for the
    larger (signed) header, so the body fits ``max_packet`` whichever way it is sealed."""

    def __init__(
        self, kind: Kind, sender: str, seq: int, nonce: int, target: tuple[str, str, int] | None, reply: bool
    ) -> None:
        pk = msgpack.Packer(use_bin_type=True)
        fields: dict[str, Any] = {"t": int(kind), "s": seq, "n": nonce}
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
        self.fixed = header_len(Mode.SIGNED, sender) + len(self.head)

    def size(self, n: int, payload: int) -> int:
        return self.fixed + _array_header_len(n) + payload

    def body(self, parts: Sequence[bytes]) -> bytes:
        array_header: bytes = msgpack.Packer().pack_array_header(len(parts))
        return self.head + array_header + b"".join(parts)


def pack(
    kind: Kind,
    sender: str,
    seq: int,
    updates: Sequence[bytes],
    max_packet: int = DEFAULT_MAX_PACKET,
    *,
    nonce: int,
    target: tuple[str, str, int] | None = None,
    reply: bool = False,
) -> tuple[bytes, list[int]]:
    """One body carrying as many of ``updates`` (pre-encoded, in order of preference) as fit a datagram.

    Returns the body (to seal: ``seal_pair``/``seal_signed``) and the indexes of the updates it carries.
    Raises ``ValueError`` if even the bare message does not fit ``max_packet``.
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
    return frame.body([updates[i] for i in chosen]), chosen


def pack_all(
    kind: Kind,
    sender: str,
    seq: int,
    updates: Sequence[bytes],
    max_packet: int = DEFAULT_MAX_PACKET,
    *,
    nonce: int,
    reply: bool = False,
) -> list[bytes]:
    """Every update, split over as many bodies as needed (``reply`` is set on the last one only).

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
    out = [_Frame(kind, sender, seq, nonce + i, None, False).body(g) for i, g in enumerate(groups[:-1])]
    out.append(_Frame(kind, sender, seq, nonce + len(groups) - 1, None, reply).body(groups[-1]))
    return out


def decode_body(env: Envelope) -> Message:
    """The body of an authenticated envelope, every field checked."""
    try:
        raw = msgpack.unpackb(env.body, raw=False, strict_map_key=True, use_list=True)
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
        sender=env.sender,
        seq=_int(raw.get("s", 0), 0, MAX_U64, "seq"),
        updates=[r.update for r in records],
        target=target,
        reply=_bool(raw.get("r", False), "reply"),
        nonce=_int(raw.get("n"), 0, MAX_COUNTER, "nonce"),
        records=records,
    )


def decode(data: bytes, key: bytes, max_packet: int = DEFAULT_MAX_PACKET, *, pair_key: bytes | None = None) -> Message:
    """A whole datagram checked as far as keys allow: the cluster MAC of a SIGNED one (its signature is the
    receiver's to check, against the sender's key), the MAC of a PAIR one with ``pair_key``."""
    env = open_envelope(data, max_packet)
    if env.mode is Mode.SIGNED and not cluster_ok(env, key):
        raise AuthError("bad cluster MAC")
    if env.mode is Mode.PAIR:
        if pair_key is None:
            raise UnknownSenderError(f"no pair key for {env.sender!r}")
        if not pair_ok(env, pair_key):
            raise SignatureError(f"bad pair MAC from {env.sender!r}")
    return decode_body(env)
