"""Gossip datagrams: round trips, the size bound and splitting, and every kind of bad packet."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drover.agent.gossip import codec
from drover.agent.gossip.codec import Kind
from drover.agent.gossip.identity import SIG_LEN, NodeKey, Verifier
from drover.agent.gossip.state import Endpoint, EndpointEntry, Member, Status, Update

KEY = b"cluster-secret"
SIGNER = NodeKey.from_seed(b"s" * 32)
SIGNED = {"signer": SIGNER, "nonce": 1}


def member(i: int = 0, meta: tuple[tuple[str, str], ...] = ()) -> Member:
    return Member(f"node-{i}", f"127.0.0.{i % 250 + 1}", 7000 + i, 1_700_000_000_000 + i, Status.SUSPECT, 12, meta)


def entry(i: int = 0) -> EndpointEntry:
    ep = Endpoint("web", "127.0.0.1", 30000 + i, "node-1", f"container-{i:04d}-abcdef", 3, i % 2 == 0)
    return EndpointEntry(ep, 1_700_000_000_000, i, i % 3 != 0)


def test_updates_round_trip() -> None:
    ups: list[Update] = [member(1, (("zone", "a"), ("rack", "r1"))), entry(2), entry(3)]
    data, chosen = codec.pack(Kind.PING, "node-0", 42, [codec.encode_update(u) for u in ups], KEY, **SIGNED)
    assert chosen == [0, 1, 2]
    msg = codec.decode(data, KEY)
    assert (msg.kind, msg.sender, msg.seq, msg.updates, msg.reply) == (Kind.PING, "node-0", 42, ups, False)


def test_ping_req_carries_its_target() -> None:
    data, _ = codec.pack(Kind.PING_REQ, "a", 7, [], KEY, **SIGNED, target=("b", "127.0.0.2", 7001))
    assert codec.decode(data, KEY).target == ("b", "127.0.0.2", 7001)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 200), max_packet=st.sampled_from([300, 512, 1400]))
def test_pack_all_splits_within_the_bound_and_keeps_everything(n: int, max_packet: int) -> None:
    ups: list[Update] = [entry(i) if i % 4 else member(i) for i in range(n)]
    parts = [codec.encode_update(u) for u in ups]
    packets = codec.pack_all(Kind.SYNC, "node-0", 0, parts, KEY, max_packet, **SIGNED, reply=True)
    assert all(len(p) <= max_packet for p in packets)
    decoded = [codec.decode(p, KEY, max_packet) for p in packets]
    assert [u for m in decoded for u in m.updates] == ups
    assert [m.reply for m in decoded] == [False] * (len(packets) - 1) + [True]


def test_pack_fills_one_datagram_and_reports_what_it_took() -> None:
    parts = [codec.encode_update(entry(i)) for i in range(100)]
    data, chosen = codec.pack(Kind.GOSSIP, "node-0", 0, parts, KEY, **SIGNED)
    assert 1300 < len(data) <= codec.DEFAULT_MAX_PACKET
    assert chosen == list(range(len(chosen))) and 5 < len(chosen) < 100
    assert len(codec.decode(data, KEY).updates) == len(chosen)


def test_wrong_key_is_an_auth_error() -> None:
    data, _ = codec.pack(Kind.PING, "a", 1, [codec.encode_update(member())], KEY, **SIGNED)
    with pytest.raises(codec.AuthError):
        codec.decode(data, b"another-cluster")


def test_flipped_byte_is_an_auth_error() -> None:
    data, _ = codec.pack(Kind.PING, "a", 1, [codec.encode_update(member())], KEY, **SIGNED)
    bad = bytearray(data)
    bad[-3] ^= 0x01
    with pytest.raises(codec.AuthError):
        codec.decode(bytes(bad), KEY)


def test_oversize_is_refused_before_anything_else() -> None:
    with pytest.raises(codec.OversizeError):
        codec.decode(b"\x00" * 1401, KEY)


def test_other_version_is_a_version_error() -> None:
    data, _ = codec.pack(Kind.PING, "a", 1, [], KEY, **SIGNED)
    with pytest.raises(codec.VersionError):
        codec.decode(data[:2] + bytes((codec.VERSION + 1,)) + data[3:], KEY)


def sealed(body: object) -> bytes:
    return sealed_raw(msgpack.packb(body, use_bin_type=True))


def sealed_raw(raw: bytes) -> bytes:
    prefix = codec.MAGIC + bytes((codec.VERSION,))
    rest = bytes(SIG_LEN) + raw
    return prefix + codec._mac(KEY, prefix + rest) + rest


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"DG",
        b"hello world, not gossip at all, but long enough" * 2,
        sealed_raw(b"\xc1"),
        sealed([1, 2, 3]),
        sealed({"t": 99, "f": "a", "s": 1, "n": 1, "u": []}),
        sealed({"t": 1, "f": "", "s": 1, "n": 1, "u": []}),
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
        codec.decode(packet, KEY)


@settings(max_examples=300, deadline=None)
@given(noise=st.binary(max_size=1400))
def test_random_bytes_only_ever_raise_packet_errors(noise: bytes) -> None:
    with pytest.raises(codec.PacketError):
        codec.decode(noise, KEY)


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
        codec.decode(sealed(body), KEY)
    except codec.PacketError:
        pass


def test_the_sender_signature_verifies_only_with_the_sender_key() -> None:
    data, _ = codec.pack(Kind.PING, "a", 1, [], KEY, **SIGNED)
    msg = codec.decode(data, KEY)
    codec.verify_sender(msg, SIGNER.public, Verifier())
    with pytest.raises(codec.SignatureError):
        codec.verify_sender(msg, NodeKey.generate().public, Verifier())
    with pytest.raises(codec.UnknownSenderError):
        codec.verify_sender(msg, None, Verifier())


def test_a_body_tampered_under_a_recomputed_mac_fails_the_signature() -> None:
    """Whoever holds the cluster key can re-MAC a datagram, but not re-sign it."""
    data, _ = codec.pack(Kind.PING, "a", 1, [codec.encode_update(member())], KEY, **SIGNED)
    cut = len(codec.MAGIC) + 1 + codec.MAC_LEN
    body = bytearray(data[codec.HEADER_LEN :])
    body[-3] ^= 0x01
    rest = data[cut : codec.HEADER_LEN] + bytes(body)
    forged = data[:3] + codec._mac(KEY, data[:3] + rest) + rest
    msg = codec.decode(forged, KEY)
    with pytest.raises(codec.SignatureError):
        codec.verify_sender(msg, SIGNER.public, Verifier())


def test_origin_signed_updates_round_trip_and_verify_against_the_origin_only() -> None:
    origin = NodeKey.from_seed(b"o" * 32)
    u = entry(5)
    data, _ = codec.pack(Kind.GOSSIP, "forwarder", 1, [codec.encode_update(u, origin)], KEY, **SIGNED)
    (rec,) = codec.decode(data, KEY).records
    assert rec.update == u and rec.sig is not None
    assert rec.wire == codec.encode_update(u, origin)  # forwarded byte for byte
    assert codec.verify_record(rec, origin.public, Verifier())
    assert not codec.verify_record(rec, SIGNER.public, Verifier())
    plain = codec.decode(codec.pack(Kind.GOSSIP, "f", 1, [codec.encode_update(u)], KEY, **SIGNED)[0], KEY)
    assert plain.records[0].sig is None and not codec.verify_record(plain.records[0], origin.public, Verifier())


def test_pack_all_numbers_its_datagrams_from_the_nonce() -> None:
    parts = [codec.encode_update(entry(i)) for i in range(60)]
    packets = codec.pack_all(Kind.SYNC, "a", 0, parts, KEY, signer=SIGNER, nonce=1000)
    assert len(packets) > 1
    assert [codec.decode(p, KEY).nonce for p in packets] == list(range(1000, 1000 + len(packets)))
