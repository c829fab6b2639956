"""NodeProxy: listeners follow set_services; ports that cannot be bound are reported, never raised."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest

from drover.agent.proxy import Backend, NodeProxy
from tests.fixtures import free_tcp_port, wait_for
from tests.integration.proxy import helpers
from tests.integration.proxy.helpers import HOST, Handler, TestBackend, ask

Backends = Callable[[str, Handler], Awaitable[TestBackend]]


@pytest.fixture
async def table() -> AsyncIterator[dict[str, tuple[Backend, ...]]]:
    yield {}


@pytest.fixture
async def node(table: dict[str, tuple[Backend, ...]]) -> AsyncIterator[NodeProxy]:
    def resolve(service: str) -> Sequence[Backend]:
        return table.get(service, ())

    proxy = NodeProxy(HOST, resolve)
    yield proxy
    await proxy.close()


async def refused(port: int) -> bool:
    try:
        _reader, writer = await asyncio.open_connection(HOST, port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


async def test_set_services_adds_and_removes_listeners(
    node: NodeProxy, table: dict[str, tuple[Backend, ...]], backends: Backends
) -> None:
    web, api = await backends("web-1", helpers.hello), await backends("api-1", helpers.hello)
    table.update(web=(web.backend,), api=(api.backend,))
    web_port, api_port = free_tcp_port(), free_tcp_port()

    await node.set_services({"web": web_port})
    assert node.services() == {"web": web_port}
    assert (await ask(web_port)).startswith("web-1")
    assert await refused(api_port)

    await node.set_services({"web": web_port, "api": api_port})
    assert node.services() == {"web": web_port, "api": api_port}
    assert (await ask(api_port)).startswith("api-1")
    assert (await ask(web_port)).startswith("web-1")

    # A connection open on web survives web's removal; new ones are refused.
    reader, writer = await asyncio.open_connection(HOST, web_port)
    writer.write(b"before\n")
    assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"web-1")
    await node.set_services({"api": api_port})
    assert node.services() == {"api": api_port}
    assert set(node.stats) == {"api"}
    assert await refused(web_port)
    writer.write(b"after\n")
    assert await asyncio.wait_for(reader.readline(), 5) == b"web-1 after\n"
    writer.close()

    # Same call again: nothing changes, nothing is rebound.
    await node.set_services({"api": api_port})
    assert (await ask(api_port)).startswith("api-1")
    assert node.errors() == {}


async def test_port_change_moves_the_listener(
    node: NodeProxy, table: dict[str, tuple[Backend, ...]], backends: Backends
) -> None:
    web = await backends("web-1", helpers.hello)
    table["web"] = (web.backend,)
    old, new = free_tcp_port(), free_tcp_port()
    await node.set_services({"web": old})
    await node.set_services({"web": new})
    assert await refused(old)
    assert (await ask(new)).startswith("web-1")


async def test_port_taken_is_reported_not_raised_and_retried_later(
    node: NodeProxy, table: dict[str, tuple[Backend, ...]], backends: Backends
) -> None:
    web = await backends("web-1", helpers.hello)
    table.update(web=(web.backend,), api=(web.backend,))
    api_port = free_tcp_port()
    squatter = socket.socket()
    squatter.bind((HOST, 0))
    squatter.listen(1)
    taken = squatter.getsockname()[1]
    try:
        await node.set_services({"web": taken, "api": api_port})  # must not raise
        assert set(node.errors()) == {"web"}
        assert str(taken) in node.errors()["web"]
        assert node.bind_failures == 1
        assert node.services() == {"api": api_port}
        assert (await ask(api_port)).startswith("web-1")  # the other service is unaffected
    finally:
        squatter.close()
    # The port is free now: the next set_services binds it and clears the error.
    await node.set_services({"web": taken, "api": api_port})
    assert node.errors() == {}
    assert (await ask(taken)).startswith("web-1")


async def test_removing_a_service_clears_its_error(node: NodeProxy) -> None:
    with socket.socket() as squatter:
        squatter.bind((HOST, 0))
        squatter.listen(1)
        await node.set_services({"web": squatter.getsockname()[1]})
        assert set(node.errors()) == {"web"}
        await node.set_services({})
        assert node.errors() == {}


async def test_invalid_port_is_reported(node: NodeProxy) -> None:
    await node.set_services({"web": 70000, "api": -1})
    assert set(node.errors()) == {"web", "api"}
    assert node.services() == {}


async def test_stats_count_per_service(
    node: NodeProxy, table: dict[str, tuple[Backend, ...]], backends: Backends
) -> None:
    web = await backends("web-1", helpers.hello)
    table["web"] = (Backend(HOST, free_tcp_port(), "dead"), web.backend)
    port = free_tcp_port()
    await node.set_services({"web": port})
    for _ in range(4):
        assert (await ask(port)).startswith("web-1")
    stats = node.stats["web"]
    assert stats.connections == 4
    # Round-robin: connections 1 and 3 start on the dead backend, retry on the live one.
    assert stats.failed_attempts == 2 and stats.retries == 2 and stats.no_backend == 0
    await wait_for(lambda: node.stats["web"].active == 0)
    assert stats.as_dict()["connections"] == 4


async def test_close_drops_open_connections(
    table: dict[str, tuple[Backend, ...]], backends: Backends
) -> None:
    web = await backends("web-1", helpers.hello)
    table["web"] = (web.backend,)
    proxy = NodeProxy(HOST, lambda s: table.get(s, ()))
    port = free_tcp_port()
    await proxy.set_services({"web": port})
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(b"x\n")
    await asyncio.wait_for(reader.readline(), 5)
    await proxy.close()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert await refused(port)
    await wait_for(lambda: web.open == 0, message="backend connection left open")
    writer.close()


def test_bad_strategy_is_rejected() -> None:
    with pytest.raises(ValueError, match="strategy"):
        NodeProxy(HOST, lambda s: (), strategy="random")
    with pytest.raises(ValueError, match="max_attempts"):
        NodeProxy(HOST, lambda s: (), max_attempts=0)
