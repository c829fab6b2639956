"""Gossip datagrams: round trips, the size bound and splitting, pair MACs and signatures, and every kind of bad
packet."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drover.agent.gossip import codec
from drover.agent.gossip.codec import Kind, Mode
from drover.agent.gossip.identity import SIG_LEN, NodeKey, Verifier
from drover.agent.gossip.pairkeys import derive
from drover.agent.gossip.state import Endpoint, EndpointEntry, Member, Status, Update

KEY = b"cluster-secret"
SIGNER = NodeKey.from_seed(b"s" * 32)
PEER = NodeKey.from_seed(b"p" * 32)
PAIR = derive(KEY, "node-0", SIGNER, "peer", PEER.public)
SIGNED = {"nonce": 1}


def seal(body: bytes, sender: str = "node-0", *, signed: bool = False) -> bytes:
    return codec.seal_signed(sender, body, KEY, SIGNER) if signed else codec.seal_pair(sender, body, PAIR)  # type: ignore[arg-type]


def dec(data: bytes, max_packet: int = codec.DEFAULT_MAX_PACKET) -> codec.Message:
    return codec.decode(data, KEY, max_packet, pair_key=PAIR)


def member(i: int = 0, meta: tuple[tuple[str, str], ...] = ()) -> Member:
    return Member(f"node-{i}", f"127.0.0.{i % 250 + 1}", 7000 + i, 1_700_000_000_000 + i, Status.SUSPECT, 12, meta)


def entry(i: int = 0) -> EndpointEntry:
    ep = Endpoint("web", "127.0.0.1", 30000 + i, "node-1", f"container-{i:04d}-abcdef", 3, i % 2 == 0)
    return EndpointEntry(ep, 1_700_000_000_000, i, i % 3 != 0)


def test_updates_round_trip() -> None:
    ups: list[Update] = [member(1, (("zone", "a"), ("rack", "r1"))), entry(2), entry(3)]
    body, chosen = codec.pack(Kind.PING, "node-0", 42, [codec.encode_update(u) for u in ups], **SIGNED)
    assert chosen == [0, 1, 2]
    for signed in (False, True):
        msg = dec(seal(body, signed=signed))
        assert (msg.kind, msg.sender, msg.seq, msg.updates, msg.reply) == (Kind.PING, "node-0", 42, ups, False)


def test_ping_req_carries_its_target() -> None:
    body, _ = codec.pack(Kind.PING_REQ, "a", 7, [], **SIGNED, target=("b", "127.0.0.2", 7001))
    assert dec(seal(body, "a")).target == ("b", "127.0.0.2", 7001)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 200), max_packet=st.sampled_from([300, 512, 1400]))
def test_pack_all_splits_within_the_bound_and_keeps_everything(n: int, max_packet: int) -> None:
    ups: list[Update] = [entry(i) if i % 4 else member(i) for i in range(n)]
    parts = [codec.encode_update(u) for u in ups]
    bodies = codec.pack_all(Kind.SYNC, "node-0", 0, parts, max_packet, **SIGNED, reply=True)
    packets = [seal(b, signed=signed) for b in bodies for signed in (False, True)][1::2]
    assert all(len(seal(b, signed=signed)) <= max_packet for b in bodies for signed in (False, True))
    decoded = [dec(p, max_packet) for p in packets]
    assert [u for m in decoded for u in m.updates] == ups
    assert [m.reply for m in decoded] == [False] * (len(packets) - 1) + [True]


def test_pack_fills_one_datagram_and_reports_what_it_took() -> None:
    parts = [codec.encode_update(entry(i)) for i in range(100)]
    body, chosen = codec.pack(Kind.GOSSIP, "node-0", 0, parts, **SIGNED)
    data = seal(body, signed=True)
    assert 1300 < len(data) <= codec.DEFAULT_MAX_PACKET
    assert chosen == list(range(len(chosen))) and 5 < len(chosen) < 100
    assert len(dec(data).updates) == len(chosen)
    assert len(seal(body)) == len(data) - (codec.MAC_LEN + SIG_LEN - codec.PAIR_MAC_LEN)


def test_wrong_cluster_key_is_an_auth_error() -> None:
    body, _ = codec.pack(Kind.PING, "a", 1, [codec.encode_update(member())], **SIGNED)
    with pytest.raises(codec.AuthError):
        codec.decode(seal(body, "a", signed=True), b"another-cluster")
    other_cluster = derive(b"another-cluster", "node-0", SIGNER, "peer", PEER.public)
    assert other_cluster is not None and other_cluster != PAIR  # the cluster key is part of every pair key
    with pytest.raises(codec.SignatureError):
        codec.decode(seal(body), KEY, pair_key=other_cluster)


@pytest.mark.parametrize("signed", [False, True])
def test_flipped_byte_fails_authentication(signed: bool) -> None:
    body, _ = codec.pack(Kind.PING, "a", 1, [codec.encode_update(member())], **SIGNED)
    data = seal(body, "a", signed=signed)
    for at in (-3, 6):  # in the body, in the sender's name
        bad = bytearray(data)
        bad[at] ^= 0x01
        with pytest.raises(codec.AuthError if signed else codec.SignatureError):
            dec(bytes(bad))


def test_a_pair_datagram_opens_only_with_its_pair_key() -> None:
    """The pair key is the same for both ends and differs for every other pair, so a MAC that verifies proves
    the sender (only the two ends can make it) and a datagram cannot be re-addressed to a third node."""
    third = NodeKey.from_seed(b"t" * 32)
    assert derive(KEY, "peer", PEER, "node-0", SIGNER.public) == PAIR
    other = derive(KEY, "node-0", SIGNER, "third", third.public)
    impostor = derive(KEY, "third", third, "peer", PEER.public)  # "third" claiming to be node-0 to peer
    assert PAIR is not None and other is not None and len({PAIR, other, impostor}) == 3
    body, _ = codec.pack(Kind.PING, "node-0", 1, [], **SIGNED)
    with pytest.raises(codec.SignatureError):
        codec.decode(seal(body), KEY, pair_key=other)
    with pytest.raises(codec.SignatureError):
        codec.decode(codec.seal_pair("node-0", body, impostor), KEY, pair_key=PAIR)  # type: ignore[arg-type]
    with pytest.raises(codec.UnknownSenderError):
        codec.decode(seal(body), KEY)  # no key for the sender
    assert derive(KEY, "node-0", SIGNER, "bad", b"\x00" * 32) is None  # not a usable curve point


def test_oversize_is_refused_before_anything_else() -> None:
    with pytest.raises(codec.OversizeError):
        codec.decode(b"\x00" * 1401, KEY)


@pytest.mark.parametrize("version", [2, 4])
def test_other_version_is_a_version_error(version: int) -> None:
    """Version 2 (every datagram ed25519-signed) and later ones are dropped, not misread."""
    data = seal(codec.pack(Kind.PING, "a", 1, [], **SIGNED)[0], "a")
    with pytest.raises(codec.VersionError):
        dec(data[:2] + bytes((version,)) + data[3:])


def sealed(body: object) -> bytes:
    return sealed_raw(msgpack.packb(body, use_bin_type=True))


def sealed_raw(raw: bytes) -> bytes:
    """``raw`` as an authenticated body (a pair MAC that verifies): only its parsing can fail."""
    return seal(raw, "a")


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"DG",
        b"hello world, not gossip at all, but long enough" * 2,
        b"DG\x03P",  # no sender
        b"DG\x03X\x01a" + bytes(16),  # unknown mode
        b"DG\x03P\x05a" + bytes(16),  # sender longer than the datagram
        b"DG\x03P\x00" + bytes(16),  # empty sender
        b"DG\x03P\x02\xff\xfe" + bytes(16),  # sender not UTF-8
        b"DG\x03S\x01a" + bytes(40),  # too short for a signed header
        sealed_raw(b"\xc1"),
        sealed([1, 2, 3]),
        sealed({"t": 99, "f": "a", "s": 1, "n": 1, "u": []}),
        sealed({"t": 1, "f": "a", "s": -1, "n": 1, "u": []}),
        sealed({"t": 1, "f": "a", "s": 1, "n": 1, "u": {}}),
        sealed({"t": 1, "f": "a", "s": 1, "n": 1, "u": [[7, 1, 2]]}),
        sealed({"t": 1, "f": "a", "s": 1, "n": 1, "u": [[0, "n", "127.0.0.1", 70000, 1, 0, 1, []]]}),
        sealed({"t": 1, "f": "a", "s": 1, "n": 1, "u": [[0, "n", "127.0.0.1", 7000, 1, 9, 1, []]]}),
        sealed({"t": 1, "f": "a", "s": 1, "n": 1, "u": [[0, "n", "127.0.0.1", 7000, 1, 0, 1, ["odd"]]]}),
        sealed({"t": 1, "f": "a", "s": 1, "n": 1, "u": [[0, "n", "127.0.0.1", True, 1, 0, 1, []]]}),
        sealed({"t": 1, "f": "a", "s": 1, "n": 1, "u": [[1, "n", "c", 30000, 1, 1, 1, "web", "127.0.0.1", 1, True]]}),
        sealed({"t": 3, "f": "a", "s": 1, "n": 1, "u": []}),
        sealed({"t": 1, "f": "a", "s": 1, "u": []}),  # no nonce
        sealed({"t": 1, "f": "a", "s": 1, "n": 2**64 - 1, "u": []}),
        sealed({"t": 1, "f": "a", "s": 1, "n": 1, "u": [b"\x00" * SIG_LEN]}),  # signed update, no row
        sealed({"t": 1, "f": "a", "s": 1, "n": 1, "u": [b"\x00" * SIG_LEN + b"\xc1"]}),
        sealed({"t": 3, "f": "a", "s": 1, "n": 1, "u": [], "g": ["b", "127.0.0.1"]}),
    ],
)
def test_malformed_packets_raise_malformed(packet: bytes) -> None:
    with pytest.raises(codec.MalformedError):
        dec(packet)


@settings(max_examples=300, deadline=None)
@given(noise=st.binary(max_size=1400), mode=st.sampled_from([b"", b"DG\x03P", b"DG\x03S"]))
def test_random_bytes_only_ever_raise_packet_errors(noise: bytes, mode: bytes) -> None:
    with pytest.raises(codec.PacketError):
        dec(mode + noise)


@settings(max_examples=300, deadline=None)
@given(
    body=st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=8) | st.binary(max_size=8),
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=3), inner, max_size=5),
        max_leaves=20,
    )
)
def test_authenticated_garbage_only_ever_raises_packet_errors(body: object) -> None:
    """A peer with the key sending nonsense (a bug, another version) cannot crash the decoder."""
    try:
        dec(sealed(body))
    except codec.PacketError:
        pass


def test_the_sender_signature_verifies_only_with_the_sender_key() -> None:
    body, _ = codec.pack(Kind.SYNC, "a", 1, [], **SIGNED, reply=True)
    env = codec.open_envelope(seal(body, "a", signed=True))
    assert env.mode is Mode.SIGNED and env.sender == "a" and codec.cluster_ok(env, KEY)
    assert codec.signature_ok(env, SIGNER.public, Verifier())
    assert not codec.signature_ok(env, NodeKey.generate().public, Verifier())
    assert not codec.pair_ok(env, PAIR)  # type: ignore[arg-type]  # a signed datagram is not a pair one


def test_a_body_tampered_under_a_recomputed_mac_fails_the_signature() -> None:
    """Whoever holds the cluster key can re-MAC a datagram, but not re-sign it."""
    body, _ = codec.pack(Kind.PING, "a", 1, [codec.encode_update(member())], **SIGNED)
    env = codec.open_envelope(seal(body, "a", signed=True))
    tampered = bytearray(env.body)
    tampered[-3] ^= 0x01
    sig = env.auth[codec.MAC_LEN :]
    forged = env.head + codec._mac(KEY, env.head + sig + bytes(tampered)) + sig + bytes(tampered)
    env2 = codec.open_envelope(forged)
    assert codec.cluster_ok(env2, KEY)
    assert not codec.signature_ok(env2, SIGNER.public, Verifier())


def test_origin_signed_updates_round_trip_and_verify_against_the_origin_only() -> None:
    origin = NodeKey.from_seed(b"o" * 32)
    u = entry(5)
    body, _ = codec.pack(Kind.GOSSIP, "forwarder", 1, [codec.encode_update(u, origin)], **SIGNED)
    (rec,) = dec(seal(body, "forwarder")).records
    assert rec.update == u and rec.sig is not None
    assert rec.wire == codec.encode_update(u, origin)  # forwarded byte for byte
    assert codec.verify_record(rec, origin.public, Verifier())
    assert not codec.verify_record(rec, SIGNER.public, Verifier())
    plain = dec(seal(codec.pack(Kind.GOSSIP, "f", 1, [codec.encode_update(u)], **SIGNED)[0], "f"))
    assert plain.records[0].sig is None and not codec.verify_record(plain.records[0], origin.public, Verifier())


def test_a_record_signature_is_checked_once_however_often_it_comes() -> None:
    origin = NodeKey.from_seed(b"o" * 32)
    v = Verifier(checked=8)
    bodies = [codec.pack(Kind.GOSSIP, "f", 1, [codec.encode_update(entry(i), origin)], **SIGNED)[0] for i in range(10)]
    recs = [dec(seal(b, "f")).records[0] for b in bodies]
    for _ in range(3):
        assert codec.verify_record(recs[0], origin.public, v)
        assert not codec.verify_record(recs[0], SIGNER.public, v)  # the key is part of what is remembered
    assert v.checks == 2
    for r in recs:  # more than the bound: the oldest outcomes are forgotten, and checked again when they come
        assert codec.verify_record(r, origin.public, v)
    assert len(v._checked) == 8 and v.checks == 11  # recs[0] came from the cache
    assert codec.verify_record(recs[0], origin.public, v) and v.checks == 12  # evicted since: checked again


def test_pack_all_numbers_its_datagrams_from_the_nonce() -> None:
    parts = [codec.encode_update(entry(i)) for i in range(60)]
    bodies = codec.pack_all(Kind.SYNC, "a", 0, parts, nonce=1000)
    assert len(bodies) > 1
    assert [dec(seal(b, "a")).nonce for b in bodies] == list(range(1000, 1000 + len(bodies)))
