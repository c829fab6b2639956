"""The DNS wire codec: round trips, compression pointers (loops, forward pointers), bounds, and random
bytes that never raise anything but ``DnsError``; plus the responder's answers without a socket."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drover.agent.dns import codec
from drover.agent.dns.codec import DnsError, Header, Question
from drover.agent.dns.server import DnsResponder, lookup_table
from drover.shared.models import ServiceRecord

labels_st = st.lists(st.binary(min_size=1, max_size=63), max_size=8).filter(
    lambda ls: sum(len(x) + 1 for x in ls) + 1 <= codec.MAX_NAME
)
question_st = st.builds(
    Question, st.tuples(labels_st).map(lambda t: tuple(t[0])), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)
)


def header(qdcount: int = 1, flags: int = 0, ident: int = 0x1234, **counts: int) -> bytes:
    return Header(ident, flags, qdcount, counts.get("an", 0), counts.get("ns", 0), counts.get("ar", 0)).encode()


# ---------------------------------------------------------------------- never anything but DnsError
@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_dns_errors(data: bytes) -> None:
    for parse in (codec.parse_query, codec.parse_message):
        try:
            parse(data)
        except DnsError:
            pass


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 320))
def test_names_at_any_offset_raise_only_dns_errors(data: bytes, offset: int) -> None:
    try:
        labels, end = codec.parse_name(data, offset)
    except DnsError:
        return
    assert offset < end <= len(data)
    assert sum(len(x) + 1 for x in labels) + 1 <= codec.MAX_NAME


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_question_after_a_valid_header(body: bytes) -> None:
    try:
        q = codec.parse_query(header() + body)
    except DnsError:
        return
    assert isinstance(q.question, Question)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_responder_never_raises(data: bytes) -> None:
    r = DnsResponder("127.0.0.1", 0, {"web": 1}.get, "c1")
    out = r.respond(data)
    if out is not None:
        assert len(out) <= codec.MAX_UDP
        codec.parse_message(out)
    assert r.stats["errors"] == 0


# ---------------------------------------------------------------------- round trips
@settings(max_examples=300, deadline=None)
@given(question_st, st.integers(0, 0xFFFF))
def test_question_round_trip(q: Question, ident: int) -> None:
    data = header(ident=ident) + q.encode()
    parsed = codec.parse_query(data)
    assert parsed.question == q
    assert parsed.header.id == ident
    again, end = codec.parse_question(data, codec.HEADER_LEN)
    assert again == q and end == len(data)


def test_query_builder_and_presentation() -> None:
    data = codec.build_query(7, "Web.Drover.", codec.SRV)
    q = codec.parse_query(data)
    assert q.question == Question((b"Web", b"Drover"), codec.SRV, codec.CLASS_IN)
    assert q.question.name == "Web.Drover."
    assert q.header.rd and not q.header.qr
    assert Question((), codec.A).name == "."
    assert Question((b"a.b", b"\x00\\"), codec.A).name == "a\\.b.\\000\\\\."


def test_compressed_names_are_followed() -> None:
    # question "web.drover" at 12, then a record whose owner is "_http._tcp" + pointer to the question name
    data = header(an=1) + codec.Question((b"web", b"drover"), codec.A).encode()
    owner = b"\x05_http\x04_tcp" + codec.pointer(12)
    data += owner + struct.pack(">HHIH", codec.A, 1, 5, 4) + b"\x7f\x00\x00\x01"
    msg = codec.parse_message(data)
    assert msg.answers[0].labels == (b"_http", b"_tcp", b"web", b"drover")
    assert msg.answers[0].rdata == b"\x7f\x00\x00\x01"
    # a chain: a pointer to a name that itself ends in a (further back) pointer
    owner_at = codec.HEADER_LEN + len(msg.questions[0].encode())
    labels, end = codec.parse_name(data + b"\x01x" + codec.pointer(owner_at), len(data))
    assert labels == (b"x", b"_http", b"_tcp", b"web", b"drover") and end == len(data) + 4


# ---------------------------------------------------------------------- hostile names
@pytest.mark.parametrize(
    "name",
    [
        codec.pointer(12),  # points at itself
        b"\x01a" + codec.pointer(12),  # a label, then back to its own start: a loop
        b"\x01a" + codec.pointer(16) + codec.pointer(12),  # forward, then back
        codec.pointer(100),  # forward, past the end
    ],
)
def test_pointer_loops_and_forward_pointers_are_rejected(name: bytes) -> None:
    with pytest.raises(codec.BadPointerError):
        codec.parse_query(header() + name + b"\x00\x01\x00\x01")


def test_two_pointers_pointing_at_each_other() -> None:
    data = header(an=1) + b"\x00\x00\x01\x00\x01" + codec.pointer(19) + codec.pointer(17) + b"\x00" * 10
    with pytest.raises(codec.BadPointerError):
        codec.parse_message(data)


def test_pointer_chain_limit() -> None:
    # 40 pointers, each to the one before: all backwards, still refused past MAX_POINTERS
    data = bytearray(header() + b"\x00")
    for i in range(40):
        data += codec.pointer(11 + 2 * i if i else 12)  # pointer i sits at 13 + 2 * i
    with pytest.raises(codec.BadPointerError, match="too many"):
        codec.parse_name(bytes(data), len(data) - 2)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", codec.ShortPacketError),
        (b"\x03we", codec.ShortPacketError),
        (b"\x03web", codec.ShortPacketError),
        (b"\x03web\x00\x00", codec.ShortPacketError),
        (b"\xc0", codec.ShortPacketError),
        (b"\x40abc\x00\x00\x01\x00\x01", codec.BadNameError),
        (b"\x80abc\x00\x00\x01\x00\x01", codec.BadNameError),
        ((b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01", codec.BadNameError),  # 257 bytes
    ],
)
def test_bad_questions(body: bytes, error: type[DnsError]) -> None:
    with pytest.raises(error):
        codec.parse_query(header() + body)


def test_short_header_and_question_counts() -> None:
    with pytest.raises(codec.ShortPacketError):
        codec.parse_query(b"\x00" * 11)
    q = Question((b"web",), codec.A).encode()
    for n in (0, 2):
        with pytest.raises(codec.BadCountError):
            codec.parse_query(header(qdcount=n) + q + q)


def test_encode_name_limits() -> None:
    with pytest.raises(codec.BadNameError):
        codec.encode_name((b"",))
    with pytest.raises(codec.BadNameError):
        codec.encode_name((b"a" * 64,))
    with pytest.raises(codec.BadNameError):
        codec.encode_name((b"a" * 63,) * 4)
    assert codec.encode_name(()) == b"\x00"


# ---------------------------------------------------------------------- responses
def test_response_echoes_id_rd_and_question_and_truncates() -> None:
    query = codec.parse_query(codec.build_query(0xBEEF, "web.drover"))
    rec = codec.Record(codec.QUESTION_NAME, codec.A, 5, codec.a_rdata("127.0.0.1"))
    msg = codec.parse_message(codec.build_response(query, codec.NOERROR, [rec]))
    assert msg.header.id == 0xBEEF and msg.header.qr and msg.header.aa and msg.header.rd and not msg.header.tc
    assert msg.questions == [query.question]
    assert [(a.labels, a.rtype, a.ttl, a.rdata) for a in msg.answers] == [
        ((b"web", b"drover"), codec.A, 5, b"\x7f\x00\x00\x01")
    ]
    # too big: the additional section goes first, then everything but the question (TC)
    big = codec.build_response(query, codec.NOERROR, [rec], additional=[rec] * 40)
    m = codec.parse_message(big)
    assert len(big) <= 512 and not m.header.tc and len(m.answers) == 1 and not m.additional
    trunc = codec.build_response(query, codec.NOERROR, [rec] * 40)
    m = codec.parse_message(trunc)
    assert m.header.tc and not m.answers and m.questions == [query.question]


def resolve(r: DnsResponder, name: str, qtype: int = codec.A) -> codec.Message:
    out = r.respond(codec.build_query(1, name, qtype))
    assert out is not None
    return codec.parse_message(out)


def test_responder_answers() -> None:
    table = {"web": 18080, "web:http": 18080, "web:admin": 18081}
    r = DnsResponder("127.0.0.3", 0, table.get, "Prod")
    for name in ("web.drover", "WEB.DROVER.", "web.prod.drover", "web.PROD.drover."):
        m = resolve(r, name)
        assert m.header.rcode == codec.NOERROR and m.header.aa, name
        assert [(a.rtype, a.ttl, a.rdata) for a in m.answers] == [(codec.A, 5, b"\x7f\x00\x00\x03")], name
    m = resolve(r, "_admin._tcp.web.drover", codec.SRV)
    assert codec.parse_srv(m.answers[0].rdata) == (0, 0, 18081, (b"web", b"drover"))
    assert [(a.labels, a.rtype) for a in m.additional] == [((b"web", b"drover"), codec.A)]
    m = resolve(r, "_http._tcp.web.prod.drover", codec.SRV)
    assert codec.parse_srv(m.answers[0].rdata)[2] == 18080
    # known names without data of that type: NOERROR, no answers, the SOA for negative caching
    for name, qtype in (("web.drover", codec.AAAA), ("web.drover", codec.TXT), ("_tcp.web.drover", codec.SRV),
                        ("_http._tcp.web.drover", codec.A), ("drover", codec.A)):
        m = resolve(r, name, qtype)
        assert (m.header.rcode, m.answers) == (codec.NOERROR, []), name
        assert [a.rtype for a in m.authority] == [codec.SOA], name
    for name in ("db.drover", "x.web.drover", "_nope._tcp.web.drover", "_http._udp.web.drover", "web.other.drover"):
        m = resolve(r, name)
        assert m.header.rcode == codec.NXDOMAIN and not m.answers, name
    for name in ("example.com", "drover.example", "web.drover.local", "."):
        m = resolve(r, name)
        assert m.header.rcode == codec.REFUSED and not m.header.aa, name
    assert r.stats["refused"] == 4 and r.stats["nxdomain"] == 5


def test_responder_drops_responses_and_garbage_and_refuses_other_opcodes() -> None:
    r = DnsResponder("127.0.0.1", 0, {"web": 1}.get)
    resp = r.respond(codec.build_query(1, "web.drover"))
    assert resp is not None
    assert r.respond(resp) is None  # a response is never answered
    assert r.respond(b"\x00" * 5) is None
    assert r.respond(header() + codec.pointer(12) + b"\x00\x01\x00\x01") is None
    assert r.stats["malformed"] == 2 and r.stats["dropped_responses"] == 1
    notify = bytearray(codec.build_query(2, "web.drover"))
    notify[2] |= 4 << 3  # opcode NOTIFY
    m = codec.parse_message(r.respond(bytes(notify)) or b"")
    assert m.header.rcode == codec.NOTIMP and m.header.opcode == 4


def test_failing_lookup_is_servfail() -> None:
    def boom(key: str) -> int | None:
        raise RuntimeError("no")

    r = DnsResponder("127.0.0.1", 0, boom)
    assert resolve(r, "web.drover").header.rcode == codec.SERVFAIL
    assert r.stats["errors"] == 1


def test_ipv6_address_answers_aaaa() -> None:
    r = DnsResponder("::1", 0, {"web": 1}.get)
    assert resolve(r, "web.drover").answers == []
    m = resolve(r, "web.drover", codec.AAAA)
    assert [a.rdata for a in m.answers] == [b"\x00" * 15 + b"\x01"]


def test_lookup_table_from_service_records() -> None:
    def rec(name: str, ports: list[dict[str, object]], deleted: bool = False) -> bytes:
        return ServiceRecord(name=name, spec={"image": "i", "ports": ports}, deleted=deleted).to_wire()

    records = {
        "web": rec("web", [{"name": "http", "container": 80, "expose": 18080},
                           {"name": "admin", "container": 81, "expose": 18081}]),
        "db": rec("db", [{"container": 5432, "expose": None}]),
        "api": rec("api", [{"container": 9000, "expose": 19000}]),
        "old": rec("old", [{"name": "http", "container": 80, "expose": 1}], deleted=True),
        "bad": b"\x00not a record",
    }
    assert lookup_table(records) == {
        "web": 18080, "web:http": 18080, "web:admin": 18081, "api": 19000, "api:9000": 19000,
    }
