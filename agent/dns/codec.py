"""DNS wire format (RFC 1035), just what the agent's responder needs. Pure: no I/O, no clock.

Parsing is defensive, because every byte comes from the network:

* every read is bounds-checked; a short packet raises ``ShortPacketError``;
* names are at most 255 bytes on the wire and labels at most 63; the extended label types (``01``/``10``
  prefixes) are rejected (``BadNameError``);
* a compression pointer must point strictly before the start of the segment that led to it (so offsets
  strictly decrease and a loop is impossible), and at most ``MAX_POINTERS`` are followed
  (``BadPointerError``).

Every failure raises a ``DnsError`` subclass and nothing else. Building messages never compresses
anything but the owner name of records that repeat the question's name (``QUESTION_NAME``, a pointer
to offset 12); ``build_response`` keeps a response within ``max_size`` (512 by default, plain UDP DNS)
by leaving the additional section out and, if that is not enough, sending the question only with TC set.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass

HEADER = struct.Struct(">HHHHHH")
HEADER_LEN = HEADER.size  # 12
MAX_UDP = 512
MAX_NAME = 255  # wire length of a name, root label included
MAX_LABEL = 63
MAX_POINTERS = 32

# Types and classes.
A = 1
NS = 2
CNAME = 5
SOA = 6
PTR = 12
MX = 15
TXT = 16
AAAA = 28
SRV = 33
OPT = 41
ANY = 255
CLASS_IN = 1
CLASS_ANY = 255

# Header flags, opcodes and response codes.
QR = 0x8000
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
OPCODE_QUERY = 0
NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5

Labels = tuple[bytes, ...]


class DnsError(Exception):
    """A message that cannot be parsed; the subclass says why (for the stats)."""


class ShortPacketError(DnsError):
    pass


class BadNameError(DnsError):
    pass


class BadPointerError(DnsError):
    pass


class BadCountError(DnsError):
    pass


@dataclass(frozen=True)
class Header:
    id: int
    flags: int
    qdcount: int = 0
    ancount: int = 0
    nscount: int = 0
    arcount: int = 0

    @property
    def qr(self) -> bool:
        return bool(self.flags & QR)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def rcode(self) -> int:
        return self.flags & 0xF

    @property
    def tc(self) -> bool:
        return bool(self.flags & TC)

    @property
    def aa(self) -> bool:
        return bool(self.flags & AA)

    @property
    def rd(self) -> bool:
        return bool(self.flags & RD)

    def encode(self) -> bytes:
        return HEADER.pack(self.id, self.flags, self.qdcount, self.ancount, self.nscount, self.arcount)


@dataclass(frozen=True)
class Question:
    labels: Labels  # as sent (case preserved), without the empty root label
    qtype: int
    qclass: int = CLASS_IN

    @property
    def name(self) -> str:
        return name_text(self.labels)

    def encode(self) -> bytes:
        return encode_name(self.labels) + struct.pack(">HH", self.qtype, self.qclass)


@dataclass(frozen=True)
class Record:
    """A resource record ready to encode: ``owner`` is wire-encoded (a full name or a pointer)."""

    owner: bytes
    rtype: int
    ttl: int
    rdata: bytes
    rclass: int = CLASS_IN

    def encode(self) -> bytes:
        return self.owner + struct.pack(">HHIH", self.rtype, self.rclass, self.ttl, len(self.rdata)) + self.rdata


@dataclass(frozen=True)
class ParsedRecord:
    labels: Labels
    rtype: int
    rclass: int
    ttl: int
    rdata: bytes
    rdata_offset: int  # where rdata starts in the message (names inside it may be compressed)


@dataclass(frozen=True)
class Query:
    header: Header
    question: Question


@dataclass(frozen=True)
class Message:
    header: Header
    questions: list[Question]
    answers: list[ParsedRecord]
    authority: list[ParsedRecord]
    additional: list[ParsedRecord]


# ---------------------------------------------------------------------- names
def name_text(labels: Labels) -> str:
    """Presentation form (``web.drover.``): bytes outside printable ASCII, dots and backslashes escaped."""
    if not labels:
        return "."
    parts = []
    for label in labels:
        out = []
        for b in label:
            c = chr(b)
            if c in ".\\":
                out.append("\\" + c)
            elif 0x21 <= b <= 0x7E:
                out.append(c)
            else:
                out.append(f"\\{b:03d}")
        parts.append("".join(out))
    return ".".join(parts) + "."


def labels_of(name: str) -> Labels:
    """``"web.drover"`` / ``"web.drover."`` → ``(b"web", b"drover")`` (plain ASCII names only, no escapes)."""
    name = name.rstrip(".")
    labels = tuple(p.encode("ascii") for p in name.split(".")) if name else ()
    encode_name(labels)  # validates
    return labels


def encode_name(labels: Labels) -> bytes:
    out = bytearray()
    for label in labels:
        if not 0 < len(label) <= MAX_LABEL:
            raise BadNameError(f"label of {len(label)} bytes: expected 1-{MAX_LABEL}")
        out.append(len(label))
        out += label
    out.append(0)
    if len(out) > MAX_NAME:
        raise BadNameError(f"name of {len(out)} bytes: at most {MAX_NAME}")
    return bytes(out)


def pointer(offset: int) -> bytes:
    if not 0 <= offset < 0x4000:
        raise ValueError(f"pointer offset {offset} out of range")
    return struct.pack(">H", 0xC000 | offset)


QUESTION_NAME = pointer(HEADER_LEN)  # the question's name in a response built by build_response


def parse_name(data: bytes, offset: int) -> tuple[Labels, int]:
    """The labels of the name at ``offset`` and the offset just past it (past the first pointer if any)."""
    labels: list[bytes] = []
    pos = offset
    segment_start = offset
    end: int | None = None
    wire_len = 1  # the root label
    jumps = 0
    size = len(data)
    while True:
        if pos >= size:
            raise ShortPacketError("name runs past the end of the packet")
        n = data[pos]
        kind = n & 0xC0
        if kind == 0xC0:
            if pos + 1 >= size:
                raise ShortPacketError("compression pointer cut short")
            target = ((n & 0x3F) << 8) | data[pos + 1]
            jumps += 1
            if jumps > MAX_POINTERS:
                raise BadPointerError("too many compression pointers")
            if target >= segment_start:
                raise BadPointerError(f"compression pointer to {target} does not point backwards")
            if end is None:
                end = pos + 2
            pos = segment_start = target
            continue
        if kind:
            raise BadNameError(f"unsupported label type 0x{kind:02x}")
        if n == 0:
            return tuple(labels), (end if end is not None else pos + 1)
        if pos + 1 + n > size:
            raise ShortPacketError("label runs past the end of the packet")
        wire_len += 1 + n
        if wire_len > MAX_NAME:
            raise BadNameError(f"name longer than {MAX_NAME} bytes")
        labels.append(bytes(data[pos + 1 : pos + 1 + n]))
        pos += 1 + n


# ---------------------------------------------------------------------- parsing
def parse_header(data: bytes) -> Header:
    if len(data) < HEADER_LEN:
        raise ShortPacketError(f"{len(data)} bytes: shorter than a DNS header")
    return Header(*HEADER.unpack_from(data, 0))


def parse_question(data: bytes, offset: int) -> tuple[Question, int]:
    labels, pos = parse_name(data, offset)
    if pos + 4 > len(data):
        raise ShortPacketError("question type/class cut short")
    qtype, qclass = struct.unpack_from(">HH", data, pos)
    return Question(labels, qtype, qclass), pos + 4


def parse_query(data: bytes) -> Query:
    """Header and the one question of a query (any records after it, e.g. an EDNS OPT, are ignored)."""
    header = parse_header(data)
    if header.qdcount != 1:
        raise BadCountError(f"{header.qdcount} questions: expected exactly 1")
    question, _ = parse_question(data, HEADER_LEN)
    return Query(header, question)


def parse_record(data: bytes, offset: int) -> tuple[ParsedRecord, int]:
    labels, pos = parse_name(data, offset)
    if pos + 10 > len(data):
        raise ShortPacketError("record header cut short")
    rtype, rclass, ttl, rdlen = struct.unpack_from(">HHIH", data, pos)
    pos += 10
    if pos + rdlen > len(data):
        raise ShortPacketError("record data cut short")
    return ParsedRecord(labels, rtype, rclass, ttl, bytes(data[pos : pos + rdlen]), pos), pos + rdlen


def parse_message(data: bytes) -> Message:
    """A whole message, every section (used for responses, by tests and tools)."""
    header = parse_header(data)
    pos = HEADER_LEN
    questions: list[Question] = []
    for _ in range(header.qdcount):
        q, pos = parse_question(data, pos)
        questions.append(q)
    sections: list[list[ParsedRecord]] = []
    for count in (header.ancount, header.nscount, header.arcount):
        records: list[ParsedRecord] = []
        for _ in range(count):
            r, pos = parse_record(data, pos)
            records.append(r)
        sections.append(records)
    return Message(header, questions, sections[0], sections[1], sections[2])


# ---------------------------------------------------------------------- building
def a_rdata(address: str) -> bytes:
    return ipaddress.IPv4Address(address).packed


def aaaa_rdata(address: str) -> bytes:
    return ipaddress.IPv6Address(address).packed


def srv_rdata(priority: int, weight: int, port: int, target: Labels) -> bytes:
    return struct.pack(">HHH", priority, weight, port) + encode_name(target)


def soa_rdata(
    mname: Labels, rname: Labels, serial: int, refresh: int, retry: int, expire: int, minimum: int
) -> bytes:
    return encode_name(mname) + encode_name(rname) + struct.pack(">IIIII", serial, refresh, retry, expire, minimum)


def parse_srv(rdata: bytes) -> tuple[int, int, int, Labels]:
    """(priority, weight, port, target) of an SRV record's data (target uncompressed, as we send it)."""
    if len(rdata) < 7:
        raise ShortPacketError("SRV data cut short")
    priority, weight, port = struct.unpack_from(">HHH", rdata, 0)
    target, _ = parse_name(rdata, 6)
    return priority, weight, port, target


def build_response(
    query: Query,
    rcode: int,
    answers: Sequence[Record] = (),
    authority: Sequence[Record] = (),
    additional: Sequence[Record] = (),
    *,
    authoritative: bool = True,
    max_size: int = MAX_UDP,
) -> bytes:
    """The response to ``query``: same id, opcode, RD and question (its case kept)."""
    flags = QR | (query.header.opcode << 11) | (query.header.flags & RD) | (rcode & 0xF)
    if authoritative:
        flags |= AA
    question = query.question.encode()
    an = b"".join(r.encode() for r in answers)
    ns = b"".join(r.encode() for r in authority)
    ar = b"".join(r.encode() for r in additional)
    counts = [len(answers), len(authority), len(additional)]
    size = HEADER_LEN + len(question) + len(an) + len(ns)
    if size + len(ar) > max_size:
        ar, counts[2] = b"", 0  # additional data is optional: leave it out rather than truncate
    if size > max_size:
        an = ns = b""
        counts = [0, 0, 0]
        flags |= TC
    header = Header(query.header.id, flags, 1, *counts)
    return header.encode() + question + an + ns + ar


def build_query(ident: int, name: str, qtype: int = A, *, rd: bool = True) -> bytes:
    """A query for ``name`` (tests and tools)."""
    header = Header(ident, RD if rd else 0, 1)
    return header.encode() + Question(labels_of(name), qtype).encode()
