"""The agent's DNS responder: answers ``<service>.drover`` over UDP with the agent's own address.

    dns = DnsResponder("127.0.0.1", 0, {"web": 18080}.get, cluster="default")
    port = await dns.start()
    ...
    await dns.stop()

``lookup(key)`` returns the expose port of a service (``key`` = ``NAME``) or of one of its named ports
(``key`` = ``NAME:PORTNAME``), or None. Names are matched case-insensitively, with or without the
trailing dot, under ``drover.`` or ``<cluster>.drover.``:

=============================================  ==============================================================
``A <service>.drover``                         the agent's address (TTL 5): its per-node proxy listens there
                                               on the service's expose port
``SRV _<port>._tcp.<service>.drover``          ``0 0 <expose> <service>.drover.``, with the A record as
                                               additional data
``AAAA``/other types of a known name           NOERROR, no answers (an IPv6 ``address`` answers AAAA instead)
unknown names under ``drover.``                NXDOMAIN
names outside ``drover.``, classes besides IN  REFUSED: this is not a recursive resolver
other opcodes                                  NOTIMP
=============================================  ==============================================================

Negative answers carry a ``drover.`` SOA (minimum TTL 5) in the authority section, so resolvers cache
them briefly. Packets that cannot be parsed, and responses, are dropped and counted in ``stats``; nothing
a peer sends can stop the responder.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import structlog

from drover.agent.dns import codec
from drover.agent.dns.codec import Labels, Query, Record
from drover.agent.drivers.base import exposed_ports
from drover.shared.errors import WireError
from drover.shared.models import ServiceRecord

TTL = 5
ZONE = b"drover"
SOA_RECORD = Record(
    owner=codec.encode_name((ZONE,)),
    rtype=codec.SOA,
    ttl=TTL,
    rdata=codec.soa_rdata((b"ns", ZONE), (b"hostmaster", ZONE), 1, 60, 10, 3600, TTL),
)
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")

Lookup = Callable[[str], int | None]


# --- what a name is --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    kind: str  # apex | service | ent | srv
    service: str = ""
    port: int = 0


def _label(raw: bytes) -> str | None:
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if len(text) <= 63 and _LABEL.fullmatch(text) else None


def lookup_table(records: Mapping[str, bytes]) -> dict[str, int]:
    """``lookup_of`` a services-bucket snapshot (undecodable entries left out)."""
    decoded: dict[str, ServiceRecord] = {}
    for key, data in records.items():
        try:
            decoded[key] = ServiceRecord.from_wire(data)
        except WireError:
            continue
    return lookup_of(decoded)


def lookup_of(records: Mapping[str, ServiceRecord]) -> dict[str, int]:
    """DNS keys → expose ports of every live service (records by bucket key): ``NAME`` (its first port) and
    ``NAME:PORTNAME`` for every exposed port (port names as the per-node proxy keys them)."""
    out: dict[str, int] = {}
    for key, rec in sorted(records.items()):
        if rec.deleted:
            continue
        name = rec.name or key
        for i, port_name, expose in exposed_ports(rec.spec):
            if i == 0:
                out[name] = expose
            out[f"{name}:{port_name}"] = expose
    return out


# --- the responder ---------------------------------------------------------------------------------


class DnsResponder:
    def __init__(
        self,
        address: str,
        port: int,
        lookup: Lookup,
        cluster: str = "default",
        *,
        answer_address: str | None = None,
    ) -> None:
        self.address = address
        self.port = port
        self.lookup = lookup
        self.cluster = cluster.lower().encode("ascii", "replace")
        self.answer_address = answer_address or address
        self.stats: Counter[str] = Counter()
        self.log = structlog.get_logger("drover.agent.dns")
        self._transport: asyncio.DatagramTransport | None = None
        self._ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
        try:
            self._ip = ipaddress.ip_address(self.answer_address)
        except ValueError:
            self._ip = None  # a host name: known names answer with no address records

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> int:
        """Bind the UDP socket; returns the port (a free one when ``port`` is 0)."""
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self), local_addr=(self.address, self.port)
            )
        except OSError as exc:
            where = f"{self.address}:{self.port}"
            raise OSError(exc.errno, f"DNS responder cannot listen on {where}: {exc.strerror}") from exc
        self._transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])
        return self.port

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    # --- answering ---------------------------------------------------------------------------------

    def respond(self, data: bytes) -> bytes | None:
        """The response to one datagram, or None to drop it. Never raises."""
        self.stats["packets"] += 1
        try:
            query = codec.parse_query(data)
        except codec.DnsError as exc:
            self.stats["malformed"] += 1
            self.stats[f"malformed_{type(exc).__name__}"] += 1
            return None
        if query.header.qr:
            self.stats["dropped_responses"] += 1
            return None
        try:
            out = self._answer(query)
        except Exception as exc:  # a bug or a failing lookup: say so rather than go silent
            self.stats["errors"] += 1
            self.log.warning("DNS query failed", name=query.question.name, error=repr(exc))
            out = codec.build_response(query, codec.SERVFAIL, authoritative=False)
        if codec.parse_header(out).tc:
            self.stats["truncated"] += 1
        return out

    def _answer(self, query: Query) -> bytes:
        q = query.question
        if query.header.opcode != codec.OPCODE_QUERY:
            self.stats["notimp"] += 1
            return codec.build_response(query, codec.NOTIMP, authoritative=False)
        labels = tuple(label.lower() for label in q.labels)
        if not labels or labels[-1] != ZONE or q.qclass not in (codec.CLASS_IN, codec.CLASS_ANY):
            self.stats["refused"] += 1
            return codec.build_response(query, codec.REFUSED, authoritative=False)
        node = self._find(labels[:-1])
        if node is None:
            self.stats["nxdomain"] += 1
            return codec.build_response(query, codec.NXDOMAIN, authority=[SOA_RECORD])
        answers: list[Record] = []
        additional: list[Record] = []
        if node.kind == "service":
            rec = self._address_record(codec.QUESTION_NAME, q.qtype)
            if rec is not None:
                answers.append(rec)
        elif node.kind == "srv" and q.qtype in (codec.SRV, codec.ANY):
            target = (node.service.encode("ascii"), ZONE)
            rdata = codec.srv_rdata(0, 0, node.port, target)
            answers.append(Record(codec.QUESTION_NAME, codec.SRV, TTL, rdata))
            glue = self._address_record(codec.encode_name(target), codec.ANY)
            if glue is not None:
                additional.append(glue)
        elif node.kind == "apex" and len(labels) == 1 and q.qtype in (codec.SOA, codec.ANY):
            answers.append(Record(codec.QUESTION_NAME, codec.SOA, TTL, SOA_RECORD.rdata))
        self.stats["answered" if answers else "nodata"] += 1
        authority = [] if answers else [SOA_RECORD]
        return codec.build_response(query, codec.NOERROR, answers, authority, additional)

    def _address_record(self, owner: bytes, qtype: int) -> Record | None:
        """The agent's address as an A (or, for an IPv6 address, AAAA) record when ``qtype`` asks for it."""
        ip = self._ip
        if isinstance(ip, ipaddress.IPv4Address) and qtype in (codec.A, codec.ANY):
            return Record(owner, codec.A, TTL, ip.packed)
        if isinstance(ip, ipaddress.IPv6Address) and qtype in (codec.AAAA, codec.ANY):
            return Record(owner, codec.AAAA, TTL, ip.packed)
        return None

    def _find(self, rest: Labels) -> _Node | None:
        """What the name below ``drover.`` is; ``<name>.<cluster>.drover`` is tried after ``<name>.drover``."""
        node = self._find_in(rest)
        if node is None and rest and rest[-1] == self.cluster:
            node = self._find_in(rest[:-1])
        return node

    def _find_in(self, rest: Labels) -> _Node | None:
        if not rest:
            return _Node("apex")
        service = _label(rest[-1])
        if service is None:
            return None
        port = self.lookup(service)
        if port is None:
            return None
        if len(rest) == 1:
            return _Node("service", service, port)
        if rest[-2] != b"_tcp":
            return None
        if len(rest) == 2:
            return _Node("ent", service)  # _tcp.<service>: exists (it has SRV names below it), no data
        if len(rest) == 3 and rest[0].startswith(b"_"):
            name = _label(rest[0][1:])
            sport = self.lookup(f"{service}:{name}") if name is not None else None
            if sport is not None:
                return _Node("srv", service, sport)
        return None


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, responder: DnsResponder) -> None:
        self.responder = responder
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        out = self.responder.respond(data)
        if out is not None and self.transport is not None:
            with contextlib.suppress(OSError):
                self.transport.sendto(out, addr)

    def error_received(self, exc: Exception) -> None:
        self.responder.stats["socket_errors"] += 1


__all__ = ["SOA_RECORD", "TTL", "DnsResponder", "Lookup", "lookup_table"]
