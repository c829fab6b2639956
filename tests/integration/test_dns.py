"""The agent's DNS responder over real UDP on 127.0.0.0/8: hand-built packets, ``dig`` when installed, and
``<service>.drover`` through a real agent (sim driver) fed by the services bucket."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator

import pytest

from drover.agent.dns import DnsResponder, codec
from drover.shared import bus
from drover.shared.models import ServiceRecord
from tests.fixtures import free_tcp_port, wait_for
from tests.fixtures.nats import NatsServer
from tests.integration.agent_support import http_get, running_agent

TABLE = {"web": 18080, "web:http": 18080, "web:admin": 18081}


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.replies.put_nowait(data)


@pytest.fixture
async def client() -> AsyncIterator[tuple[asyncio.DatagramTransport, UdpClient]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(UdpClient, local_addr=("127.0.0.1", 0))
    try:
        yield transport, proto
    finally:
        transport.close()


@pytest.fixture
async def responder() -> AsyncIterator[DnsResponder]:
    r = DnsResponder("127.0.0.1", 0, TABLE.get, "c1")
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


async def ask(
    client: tuple[asyncio.DatagramTransport, UdpClient], port: int, packet: bytes, host: str = "127.0.0.1"
) -> codec.Message:
    transport, proto = client
    transport.sendto(packet, (host, port))
    return codec.parse_message(await asyncio.wait_for(proto.replies.get(), 2))


async def test_hand_built_queries_over_udp(
    responder: DnsResponder, client: tuple[asyncio.DatagramTransport, UdpClient]
) -> None:
    port = responder.port
    assert port > 0
    # A query written out byte by byte: id 0x4242, RD, one question "WeB.DROVER." type A class IN.
    packet = bytes.fromhex("4242 0100 0001 0000 0000 0000") + b"\x03WeB\x06DROVER\x00" + bytes.fromhex("0001 0001")
    m = await ask(client, port, packet)
    assert m.header.id == 0x4242 and m.header.qr and m.header.aa and m.header.rd
    assert m.header.rcode == codec.NOERROR
    assert m.questions[0].labels == (b"WeB", b"DROVER")  # the question comes back as asked
    assert [(a.labels, a.rtype, a.ttl, a.rdata) for a in m.answers] == [
        ((b"WeB", b"DROVER"), codec.A, 5, socket.inet_aton("127.0.0.1"))
    ]
    m = await ask(client, port, codec.build_query(2, "web.c1.drover."))
    assert [a.rdata for a in m.answers] == [socket.inet_aton("127.0.0.1")]
    m = await ask(client, port, codec.build_query(3, "_admin._tcp.web.drover", codec.SRV))
    assert codec.parse_srv(m.answers[0].rdata) == (0, 0, 18081, (b"web", b"drover"))
    assert (await ask(client, port, codec.build_query(4, "web.drover", codec.AAAA))).answers == []
    assert (await ask(client, port, codec.build_query(5, "db.drover"))).header.rcode == codec.NXDOMAIN
    assert (await ask(client, port, codec.build_query(6, "example.com"))).header.rcode == codec.REFUSED

    # Garbage, a pointer loop and a response are dropped (counted); the responder keeps answering.
    transport, _ = client
    for junk in (b"\x00" * 7, packet[:12] + b"\xc0\x0c\x00\x01\x00\x01", packet[:15], b"\xff" * 600):
        transport.sendto(junk, ("127.0.0.1", port))
    transport.sendto(codec.build_response(codec.parse_query(packet), codec.NOERROR), ("127.0.0.1", port))
    m = await ask(client, port, codec.build_query(7, "web.drover"))
    assert m.header.id == 7 and len(m.answers) == 1
    await wait_for(lambda: responder.stats["malformed"] == 4, 10, message=f"malformed counted: {responder.stats}")
    assert responder.stats["dropped_responses"] == 1


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed (the UDP test above covers the wire)")
async def test_dig(responder: DnsResponder) -> None:
    async def dig(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "dig", "@127.0.0.1", "-p", str(responder.port), "+time=2", "+tries=1", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 10)
        return out.decode()

    assert (await dig("+short", "web.drover")).strip() == "127.0.0.1"
    assert (await dig("+short", "WEB.c1.drover.")).strip() == "127.0.0.1"
    assert (await dig("+short", "SRV", "_http._tcp.web.drover")).strip() == "0 0 18080 web.drover."
    assert "status: NXDOMAIN" in await dig("nope.drover")
    assert "status: REFUSED" in await dig("example.com")
    aaaa = await dig("AAAA", "web.drover")
    assert "status: NOERROR" in aaaa and "ANSWER: 0" in aaaa
    assert responder.stats["malformed"] == 0


@pytest.mark.nats
async def test_service_name_resolves_to_the_agents_address(nats_server: NatsServer, cluster_name: str) -> None:
    expose = free_tcp_port("127.0.0.2")
    spec = {"image": "x", "ports": [{"name": "http", "container": 8080, "expose": expose}]}
    nc = await bus.connect(nats_server.url, name="test-dns")
    try:
        store = await bus.open_store(nc, cluster_name)
        await store.services.put("web", ServiceRecord(name="web", spec=spec).to_wire())
        async with running_agent(
            nats_server.url, cluster_name, "d1", driver="sim", address="127.0.0.2", dns_port=0, metrics_port=0
        ) as agent:
            assert agent.discovery is not None and agent.discovery.dns is not None
            port = agent.discovery.dns.port
            assert port > 0 and agent.discovery.dns.address == "127.0.0.2"
            loop = asyncio.get_running_loop()
            transport, proto = await loop.create_datagram_endpoint(UdpClient, local_addr=("127.0.0.1", 0))
            c = (transport, proto)
            try:

                async def a_records(name: str) -> tuple[int, list[bytes]]:
                    m = await ask(c, port, codec.build_query(9, name), host="127.0.0.2")
                    return m.header.rcode, [a.rdata for a in m.answers if a.rtype == codec.A]

                ok = (codec.NOERROR, [socket.inet_aton("127.0.0.2")])
                await wait_for(lambda: a_records("web.drover"), 10, message="web.drover resolves")
                assert await a_records("web.drover") == ok
                assert await a_records(f"web.{cluster_name}.drover") == ok
                m = await ask(c, port, codec.build_query(10, "_http._tcp.web.drover", codec.SRV), host="127.0.0.2")
                assert codec.parse_srv(m.answers[0].rdata)[2] == expose
                assert (await a_records("db.drover"))[0] == codec.NXDOMAIN

                # A new service shows up, a deleted one goes away (the services bucket is followed).
                await store.services.put("db", ServiceRecord(name="db", spec=spec | {"ports": []}).to_wire())
                await store.services.delete("web")

                async def web_gone() -> bool:
                    return (await a_records("web.drover"))[0] == codec.NXDOMAIN

                await wait_for(web_gone, 10, message="web.drover gone after delete")
                # db has no exposed port: nothing to point at.
                assert (await a_records("db.drover"))[0] == codec.NXDOMAIN
            finally:
                transport.close()
            # The responder's counters are in the agent's metrics.
            assert agent.metrics_port is not None
            code, body = await http_get("127.0.0.1", agent.metrics_port, "/metrics")
            assert code == 200 and 'drover_agent_dns_events_total{kind="answered",node="d1"}' in body
        # Stopped with the agent: its port is free again.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.2", port))
    finally:
        await nc.close()


async def test_a_taken_port_is_a_clear_error(responder: DnsResponder) -> None:
    with pytest.raises(OSError, match=rf"DNS responder cannot listen on 127\.0\.0\.1:{responder.port}"):
        await DnsResponder("127.0.0.1", responder.port, TABLE.get).start()
