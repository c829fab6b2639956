"""Probe checks against tiny loopback servers, probe spec parsing, and the Docker container config."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from drover.agent.drivers.base import Observed
from drover.agent.drivers.docker import DockerDriver
from drover.agent.drivers.dockerview import parse_time
from drover.agent.probes import check_http, check_tcp, probe_spec, probe_target
from drover.shared.models import AssignedContainer, spec_of

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    return server, port


@pytest.fixture
async def servers() -> AsyncIterator[Callable[[Handler], Awaitable[int]]]:
    started: list[asyncio.Server] = []

    async def make(handler: Handler) -> int:
        server, port = await _serve(handler)
        started.append(server)
        return port

    yield make
    for s in started:
        s.close()
        await s.wait_closed()


def _reply(status: str) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.0 {status}\r\nContent-Length: 2\r\n\r\nok".encode())
        await writer.drain()
        writer.close()

    return handler


async def _reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.transport.abort()  # like docker-proxy with nothing behind it


async def _hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()
    writer.close()


async def test_http_probe(servers: Callable[[Handler], Awaitable[int]]) -> None:
    assert (await check_http("127.0.0.1", await servers(_reply("200 OK")), "/", 1.0))[0]
    assert (await check_http("127.0.0.1", await servers(_reply("302 Found")), "/", 1.0))[0]
    ok, why = await check_http("127.0.0.1", await servers(_reply("503 Busy")), "/", 1.0)
    assert not ok and "503" in why
    ok, why = await check_http("127.0.0.1", await servers(_reset), "/", 1.0)
    assert not ok
    ok, why = await check_http("127.0.0.1", await servers(_hold), "/", 0.3)
    assert not ok and "timed out" in why


async def test_tcp_probe(servers: Callable[[Handler], Awaitable[int]]) -> None:
    assert (await check_tcp("127.0.0.1", await servers(_hold), 1.0))[0]
    ok, _ = await check_tcp("127.0.0.1", await servers(_reset), 1.0)
    assert not ok
    server, port = await _serve(_hold)
    server.close()
    await server.wait_closed()
    ok, _ = await check_tcp("127.0.0.1", port, 1.0)
    assert not ok


def test_probe_spec_and_target() -> None:
    host = {"image": "i", "network": "host"}
    assert probe_spec(spec_of({**host, "health": None})) is None
    p = probe_spec(spec_of({**host, "health": {"http": {"path": "/healthz", "port": 8080}, "interval": 3,
                                               "failure_threshold": 5}}))
    assert p is not None and p.kind == "http" and p.path == "/healthz" and p.interval == 3.0
    assert p.failure_threshold == 5 and p.timeout == 1.0
    e = probe_spec(spec_of({**host, "health": {"http": None, "exec": {"command": ["true"]}}}))
    assert e is not None and e.kind == "exec" and e.command == ("true",) and e.interval == 2.0  # the schema default
    obs = Observed("a", "c", "n", "s", 1, "running", port_map={8080: 32000})
    assert probe_target(p, obs, "127.0.0.2") == ("127.0.0.2", 32000)
    host = Observed("a", "c", "n", "s", 1, "running", port_map={8080: 8080}, host_network=True)
    assert probe_target(p, host, "127.0.0.2") == ("127.0.0.1", 8080)


def test_docker_container_config() -> None:
    d = DockerDriver("c1", "n1")
    spec = {
        "image": "local/busybox:latest",
        "command": ["httpd", "-f"],
        "env": {"A": "1"},
        "network": "bridge",
        "ports": [{"name": "http", "container": 8080}, {"container": 9000}],
        "resources": {"cpu": 0.25, "memory": 1024},
        "health": {"tcp": {"port": 9000}},
        "stop_grace": 1.5,
    }
    cfg = d.container_config(AssignedContainer(id="abc", service="web", revision=3, spec=spec), "127.0.0.2")
    assert cfg["Labels"] == {
        "drover.cluster": "c1",
        "drover.service": "web",
        "drover.node": "n1",
        "drover.revision": "3",
        "drover.id": "abc",
    }
    assert cfg["Hostname"] == "drover-web-abc" and cfg["Cmd"] == ["httpd", "-f"] and cfg["Env"] == ["A=1"]
    hc = cfg["HostConfig"]
    assert hc["Init"] is True and hc["Memory"] == 6 * 1024 * 1024
    assert "NanoCpus" not in hc and d.cpu_limit(spec_of(spec)) == 250_000_000  # the quota is set after the start
    assert hc["PortBindings"] == {
        "8080/tcp": [{"HostIp": "127.0.0.2", "HostPort": ""}],
        "9000/tcp": [{"HostIp": "127.0.0.2", "HostPort": ""}],
    }
    assert set(cfg["ExposedPorts"]) == {"8080/tcp", "9000/tcp"}
    assert hc["RestartPolicy"] == {"Name": "no"} and cfg["StopTimeout"] == 2
    host = d.container_config(
        AssignedContainer(id="x", service="web", revision=1, spec={**spec, "network": "host",
                                                                  "resources": {"cpu": 0, "memory": 0}}),
        "127.0.0.1",
    )
    assert host["HostConfig"]["NetworkMode"] == "host" and "PortBindings" not in host["HostConfig"]
    assert "NanoCpus" not in host["HostConfig"] and "Memory" not in host["HostConfig"]


def test_parse_docker_time() -> None:
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time("2024-01-02T03:04:05.123456789Z") == pytest.approx(1704164645.123456)
    assert parse_time("garbage") is None
