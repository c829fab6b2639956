"""The proxy relay over real loopback sockets (each test on asyncio's loop and on uvloop):
balancing, retries on refused / reset / closed / timed-out backends, large transfers both ways,
half-close, backpressure, draining."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from drover.agent.proxy import Backend, ServiceProxy
from drover.agent.proxy.relay import ClientSide
from tests.fixtures import free_tcp_port, ticks, wait_for
from tests.integration.proxy import helpers
from tests.integration.proxy.helpers import HOST, Handler, TestBackend, ask, connect

Backends = Callable[[str, Handler], Awaitable[TestBackend]]
Proxies = Callable[..., Awaitable[ServiceProxy]]


def names(answers: list[str]) -> collections.Counter[str]:
    return collections.Counter(a.split()[0] for a in answers)


async def test_round_robin_spreads_successive_connections_over_all_backends(
    backends: Backends, proxies: Proxies
) -> None:
    bs = [await backends(f"b{i}", helpers.hello) for i in range(3)]
    pool = tuple(b.backend for b in bs)
    proxy = await proxies(lambda: pool)
    answers = [await ask(proxy.bound_port, f"req{i}") for i in range(9)]
    assert names(answers) == {"b0": 3, "b1": 3, "b2": 3}
    assert [a.split()[1] for a in answers] == [f"req{i}" for i in range(9)]
    assert proxy.stats.connections == 9
    assert proxy.stats.failed_attempts == 0
    await wait_for(lambda: proxy.stats.active == 0, message="connections still counted as active")


async def test_keepalive_connection_stays_on_one_backend(backends: Backends, proxies: Proxies) -> None:
    bs = [await backends(f"b{i}", helpers.hello) for i in range(2)]
    pool = tuple(b.backend for b in bs)
    proxy = await proxies(lambda: pool)
    async with connect(proxy.bound_port) as (reader, writer):
        seen = set()
        for i in range(5):
            writer.write(f"r{i}\n".encode())
            seen.add((await asyncio.wait_for(reader.readline(), 5)).split()[0])
    assert len(seen) == 1


async def test_refused_backend_is_skipped_and_the_request_succeeds(backends: Backends, proxies: Proxies) -> None:
    good = await backends("good", helpers.hello)
    refused = Backend(HOST, free_tcp_port(), "refused")  # nothing listens there
    pool = (refused, good.backend)
    proxy = await proxies(lambda: pool)
    answers = [await ask(proxy.bound_port) for _ in range(4)]
    assert names(answers) == {"good": 4}
    assert proxy.stats.failed_attempts == 2  # round-robin starts on the refused one every other time
    assert proxy.stats.retries == proxy.stats.failed_attempts
    assert proxy.stats.no_backend == 0


@pytest.mark.parametrize("behaviour", ["reset", "close"])
async def test_backend_that_accepts_then_drops_before_answering_is_retried(
    backends: Backends, proxies: Proxies, behaviour: str
) -> None:
    """docker-proxy accepts for a container that does not listen, then resets: the client must
    not notice; its first bytes are sent again to another backend."""
    bad = await backends("bad", getattr(helpers, behaviour))
    good = await backends("good", helpers.hello)
    pool = (bad.backend, good.backend)
    proxy = await proxies(lambda: pool)
    answers = [await ask(proxy.bound_port, f"req{i}") for i in range(6)]
    assert answers == [f"good req{i}" for i in range(6)]
    assert bad.accepted >= 3
    assert proxy.stats.failed_attempts == bad.accepted
    assert proxy.stats.no_backend == 0


async def test_client_is_closed_after_max_attempts(backends: Backends, proxies: Proxies) -> None:
    bad = [await backends(f"bad{i}", helpers.reset) for i in range(4)]
    pool = tuple(b.backend for b in bad)
    proxy = await proxies(lambda: pool, max_attempts=3)
    async with connect(proxy.bound_port) as (reader, writer):
        writer.write(b"ping\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""
    assert proxy.stats.failed_attempts == 3
    assert proxy.stats.retries == 2
    assert proxy.stats.no_backend == 1
    assert sum(b.accepted for b in bad) == 3
    assert max(b.accepted for b in bad) == 1  # never the same backend twice for one connection


async def test_fewer_backends_than_attempts_each_tried_once(backends: Backends, proxies: Proxies) -> None:
    bad = await backends("bad", helpers.reset)
    pool = (bad.backend,)
    proxy = await proxies(lambda: pool, max_attempts=5)
    async with connect(proxy.bound_port) as (reader, writer):
        writer.write(b"ping\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""
    assert bad.accepted == 1
    assert proxy.stats.failed_attempts == 1


async def test_empty_backend_list_closes_the_client_promptly(proxies: Proxies) -> None:
    proxy = await proxies(lambda: ())
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with connect(proxy.bound_port) as (reader, writer):
        writer.write(b"ping\n")
        assert await asyncio.wait_for(reader.read(), 2) == b""
    assert loop.time() - started < 1.0
    assert proxy.stats.no_backend == 1


async def test_resolve_that_raises_closes_the_client(proxies: Proxies) -> None:
    def broken() -> tuple[Backend, ...]:
        raise RuntimeError("endpoint table unavailable")

    proxy = await proxies(broken)
    async with connect(proxy.bound_port) as (reader, _writer):
        assert await asyncio.wait_for(reader.read(), 2) == b""
    assert proxy.stats.no_backend == 1


async def test_least_connections_picks_the_least_busy(backends: Backends, proxies: Proxies) -> None:
    a = await backends("a", helpers.hello)
    b = await backends("b", helpers.hello)
    pool = (a.backend, b.backend)
    proxy = await proxies(lambda: pool, strategy="least-connections")
    port = proxy.bound_port

    async def hold() -> tuple[str, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"hold\n")
        return (await asyncio.wait_for(reader.readline(), 5)).decode().split()[0], writer

    held = [await hold() for _ in range(4)]  # 2 on each
    assert collections.Counter(name for name, _ in held) == {"a": 2, "b": 2}
    # Free both connections on b: b is now the least busy, and takes the next two.
    for name, writer in held:
        if name == "b":
            writer.close()
    await wait_for(lambda: proxy.stats.active == 2, message="closed connections still active")
    nxt = [await hold() for _ in range(2)]
    assert [name for name, _ in nxt] == ["b", "b"]
    # Now 2 and 2: a fifth connection may go either way, a sixth goes to the other.
    more = [await hold() for _ in range(2)]
    assert sorted(name for name, _ in more) == ["a", "b"]
    for _, writer in [*held, *nxt, *more]:
        writer.close()


async def test_round_robin_no_new_connections_to_a_removed_backend(backends: Backends, proxies: Proxies) -> None:
    """A draining container leaves resolve()'s list: no new connection goes there, while the
    connection already open on it goes on working."""
    a = await backends("a", helpers.hello)
    b = await backends("b", helpers.hello)
    pool: list[tuple[Backend, ...]] = [(a.backend, b.backend)]
    proxy = await proxies(lambda: pool[0])
    port = proxy.bound_port
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(b"first\n")
    first = (await asyncio.wait_for(reader.readline(), 5)).decode().split()[0]
    draining = a if first == "a" else b
    staying = b if first == "a" else a
    pool[0] = (staying.backend,)
    accepted_before = draining.accepted
    answers = [await ask(port) for _ in range(6)]
    assert names(answers) == {staying.name: 6}
    assert draining.accepted == accepted_before
    writer.write(b"still-there\n")
    assert (await asyncio.wait_for(reader.readline(), 5)).decode().split() == [draining.name, "still-there"]
    writer.close()


async def test_large_transfer_both_ways_is_intact(backends: Backends, proxies: Proxies) -> None:
    echo = await backends("echo", helpers.echo)
    pool = (echo.backend,)
    proxy = await proxies(lambda: pool)
    payload = os.urandom(8 * 1024 * 1024)
    async with connect(proxy.bound_port) as (reader, writer):

        async def send() -> None:
            for i in range(0, len(payload), 100_000):  # more than MAX_REPLAY before the first answer byte
                writer.write(payload[i : i + 100_000])
                await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send())
        received = await asyncio.wait_for(reader.read(), 60)  # until the backend's EOF
        await sender
    assert len(received) == len(payload)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


async def test_half_close_reaches_the_backend_and_the_answer_comes_back(
    backends: Backends, proxies: Proxies
) -> None:
    counter = await backends("count", helpers.count)
    pool = (counter.backend,)
    proxy = await proxies(lambda: pool)
    payload = os.urandom(3 * 1024 * 1024 + 17)
    async with connect(proxy.bound_port) as (reader, writer):
        writer.write(payload)
        await writer.drain()
        writer.write_eof()  # half-close: we still read
        answer = await asyncio.wait_for(reader.read(), 30)  # the backend answers then closes
    assert answer.decode().split() == ["count", str(len(payload)), hashlib.sha256(payload).hexdigest()]


async def test_half_closed_client_is_replayed_with_its_eof(backends: Backends, proxies: Proxies) -> None:
    bad = await backends("bad", helpers.reset)
    counter = await backends("count", helpers.count)
    pool = (bad.backend, counter.backend)
    proxy = await proxies(lambda: pool)
    async with connect(proxy.bound_port) as (reader, writer):
        writer.write(b"hello")
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.decode().split() == ["count", "5", hashlib.sha256(b"hello").hexdigest()]
    assert bad.accepted == 1


async def test_slow_client_pauses_the_backend(backends: Backends, proxies: Proxies) -> None:
    """Backpressure: a client that does not read makes the proxy stop reading from the backend,
    so the backend's own buffers fill up instead of the proxy's memory."""
    flood = await backends("flood", helpers.flood)
    pool = (flood.backend,)
    proxy = await proxies(lambda: pool)
    async with connect(proxy.bound_port) as (reader, writer):
        writer.write(b"go\n")
        await wait_for(lambda: flood.sent > 1 << 20, message="the backend never sent 1 MiB")

        # The backend ends up blocked in drain(): its count stops growing for a while.
        last = [-1]

        def stalled() -> bool:
            stable = flood.sent == last[0]
            last[0] = flood.sent
            return stable

        await wait_for(stalled, timeout=20, interval=0.3, message="the backend was never held back")
        client = _proxy_clients(proxy)[0]
        buffered = client.transport.get_write_buffer_size()
        assert buffered < 4 << 20, f"proxy buffered {buffered} bytes for a client that does not read"
        assert flood.sent < 64 << 20
        # Reading again lets it all through.
        got = 0
        while got < 8 << 20:
            got += len(await asyncio.wait_for(reader.read(1 << 20), 5))
        await wait_for(lambda: flood.sent > last[0] + (4 << 20), message="the backend was not resumed")


async def test_connect_timeout_moves_on_to_another_backend(backends: Backends, proxies: Proxies) -> None:
    """A backend whose accept queue is full drops SYNs: the connect hangs until the timeout."""
    good = await backends("good", helpers.hello)
    with socket.socket() as blackhole:
        blackhole.bind((HOST, 0))
        blackhole.listen(0)
        fillers = []
        for _ in range(4):  # fill the accept queue (never accepted)
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(blackhole.getsockname())
            fillers.append(s)
        try:
            pool = (Backend(HOST, blackhole.getsockname()[1], "blackhole"), good.backend)
            proxy = await proxies(lambda: pool, connect_timeout=0.3)
            loop = asyncio.get_running_loop()
            started = loop.time()
            answers = [await ask(proxy.bound_port, timeout=5) for _ in range(2)]
            assert names(answers) == {"good": 2}
            # Round-robin: the first connection starts on the blackhole, the second on "good".
            assert proxy.stats.failed_attempts == 1
            assert loop.time() - started >= 0.3
        finally:
            for s in fillers:
                s.close()


async def test_tcp_nodelay_on_both_sides(backends: Backends, proxies: Proxies) -> None:
    b = await backends("b", helpers.hello)
    pool = (b.backend,)
    proxy = await proxies(lambda: pool)
    async with connect(proxy.bound_port) as (reader, writer):
        writer.write(b"x\n")
        await asyncio.wait_for(reader.readline(), 5)
        client = _proxy_clients(proxy)[0]
        assert client.sink is not None
        for transport in (client.transport, client.sink):
            sock: Any = transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


async def test_client_gone_while_connecting_leaves_nothing_behind(proxies: Proxies) -> None:
    with socket.socket() as blackhole:
        blackhole.bind((HOST, 0))
        blackhole.listen(0)
        fillers = []
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(blackhole.getsockname())
            fillers.append(s)
        try:
            pool = (Backend(HOST, blackhole.getsockname()[1], "blackhole"),)
            proxy = await proxies(lambda: pool, connect_timeout=5.0, strategy="least-connections")
            _reader, writer = await asyncio.open_connection(HOST, proxy.bound_port)
            await wait_for(lambda: proxy.stats.connections == 1)
            # A reset (SO_LINGER 0): a FIN would be a half-close, which rightly keeps the attempt going.
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            await wait_for(lambda: proxy.stats.active == 0, message="client still active")
            route = proxy._route
            assert route is not None
            await wait_for(lambda: not route.connecting, message="connect attempt not cancelled")
            assert dict(route.balancer.active) == {}  # type: ignore[attr-defined]
            assert proxy.stats.failed_attempts == 0
        finally:
            for s in fillers:
                s.close()


def _proxy_clients(proxy: ServiceProxy) -> list[ClientSide]:
    route = proxy._route
    assert route is not None
    return list(route.clients)


async def test_no_replay_after_more_than_max_replay_bytes(backends: Backends, proxies: Proxies) -> None:
    """A request larger than MAX_REPLAY cannot be sent again whole: the client is closed, and the
    other backend never sees a partial copy."""
    bad = await backends("bad", helpers.swallow_then_reset)
    counter = await backends("count", helpers.count)
    pool = (bad.backend, counter.backend)
    proxy = await proxies(lambda: pool)
    async with connect(proxy.bound_port) as (reader, writer):
        writer.write(os.urandom(1024 * 1024))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""
    assert bad.accepted == 1
    assert counter.accepted == 0
    assert proxy.stats.failed_attempts == 1
    assert proxy.stats.retries == 0
    assert proxy.stats.no_backend == 1


async def test_failure_after_the_first_answer_byte_is_not_retried(backends: Backends, proxies: Proxies) -> None:
    flaky = await backends("flaky", helpers.answer_then_reset)
    good = await backends("good", helpers.hello)
    pool = (flaky.backend, good.backend)
    proxy = await proxies(lambda: pool)
    async with connect(proxy.bound_port) as (reader, writer):
        writer.write(b"ping\n")
        got = b""
        with contextlib.suppress(ConnectionError):
            while chunk := await asyncio.wait_for(reader.read(100), 5):
                got += chunk
    assert got == b"partial"
    assert good.accepted == 0
    assert proxy.stats.failed_attempts == 0


async def test_connections_beyond_the_cap_are_closed_at_once(backends: Backends, proxies: Proxies) -> None:
    b = await backends("b0", helpers.hello)
    proxy = await proxies(lambda: (b.backend,), max_clients=2)
    async with connect(proxy.bound_port) as (r1, w1), connect(proxy.bound_port) as (r2, w2):
        for r, w in ((r1, w1), (r2, w2)):
            w.write(b"hi\n")
            assert (await asyncio.wait_for(r.readline(), 5)).startswith(b"b0")
        async with connect(proxy.bound_port) as (r3, w3):
            w3.write(b"hi\n")
            with contextlib.suppress(ConnectionError):
                assert await asyncio.wait_for(r3.read(), 5) == b""  # closed without an answer
        assert proxy.stats.refused == 1 and proxy.stats.active == 2
    await wait_for(lambda: proxy.stats.active == 0)
    assert await ask(proxy.bound_port, "again")  # room again once they are gone


async def test_idle_connections_are_closed_busy_ones_kept(backends: Backends, proxies: Proxies) -> None:
    b = await backends("b0", helpers.hello)
    proxy = await proxies(lambda: (b.backend,), idle_timeout=0.6)
    async with connect(proxy.bound_port) as (quiet_r, quiet_w), connect(proxy.bound_port) as (busy_r, busy_w):
        for r, w in ((quiet_r, quiet_w), (busy_r, busy_w)):
            w.write(b"hi\n")
            await asyncio.wait_for(r.readline(), 5)
        async for n in ticks(0.1):  # for 2 s the busy one talks every 0.1 s, the quiet one says nothing
            if n == 20:
                break
            busy_w.write(b"tick\n")
            assert (await asyncio.wait_for(busy_r.readline(), 5)).startswith(b"b0")
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(quiet_r.read(), 5) == b""
        assert proxy.stats.idle_closed == 1
        busy_w.write(b"still\n")
        assert (await asyncio.wait_for(busy_r.readline(), 5)).startswith(b"b0 still")


async def test_connection_waits_for_a_backend_while_the_table_is_empty(backends: Backends, proxies: Proxies) -> None:
    """A node's replicas moving (or a restarted agent not yet synced with the gossip) empties the endpoint
    table for a moment: a client arriving then is held and served once a ready backend appears."""
    good = await backends("good", helpers.hello)
    pool: list[Backend] = []
    proxy = await proxies(lambda: tuple(pool), backend_wait=5.0)
    asking = asyncio.ensure_future(ask(proxy.bound_port, "held"))
    await wait_for(lambda: proxy.stats.connections == 1, message="client not accepted")
    assert not asking.done()
    pool.append(good.backend)
    assert await asyncio.wait_for(asking, 5) == "good held"
    assert proxy.stats.no_backend == 0


async def test_after_the_only_backend_failed_a_new_one_is_waited_for(backends: Backends, proxies: Proxies) -> None:
    """A killed node's replica refuses, its replacement is not ready yet: the client's bytes go to the
    replacement once it appears, instead of a failure."""
    refused = Backend(HOST, free_tcp_port(), "refused")
    pool = [refused]
    proxy = await proxies(lambda: tuple(pool), backend_wait=5.0)
    asking = asyncio.ensure_future(ask(proxy.bound_port, "moved"))
    await wait_for(lambda: proxy.stats.failed_attempts == 1, message="refused backend not tried")
    good = await backends("good", helpers.hello)
    pool[:] = [good.backend]
    assert await asyncio.wait_for(asking, 5) == "good moved"
    assert proxy.stats.no_backend == 0 and proxy.stats.retries == 1


async def test_waiting_for_a_backend_ends_after_backend_wait(proxies: Proxies) -> None:
    proxy = await proxies(lambda: (), backend_wait=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with connect(proxy.bound_port) as (reader, writer):
        writer.write(b"ping\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""
    assert 0.4 <= loop.time() - started < 3.0
    assert proxy.stats.no_backend == 1
