"""Bounded I/O of the agent: line cutting (hypothesis), an over-long probe status line fails the probe and the
probe loop goes on, the logs reply keeps its newest lines within its byte budget."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from hypothesis import given
from hypothesis import strategies as st

from drover.agent import logs_api
from drover.agent.drivers.base import Observed
from drover.agent.drivers.lines import TRUNCATED, LineSplitter, read_line, text_lines
from drover.agent.probes import ProbeManager, check_http
from drover.shared.models import AssignedContainer
from tests.fixtures import wait_for


def _split(chunks: list[bytes], limit: int) -> list[tuple[bytes, bool]]:
    s = LineSplitter(limit)
    out = [line for c in chunks for line in s.feed(c)]
    last = s.flush()
    return out + ([last] if last else [])


@given(st.lists(st.binary(max_size=40), max_size=20), st.integers(min_value=1, max_value=16))
def test_splitter_cuts_lines_and_never_holds_more_than_the_limit(chunks: list[bytes], limit: int) -> None:
    data = b"".join(chunks)
    expected = data.split(b"\n")
    if expected and expected[-1] == b"":
        expected.pop()
    got = _split(chunks, limit)
    assert len(got) == len(expected)
    for (line, cut), want in zip(got, expected, strict=True):
        assert line == want[:limit]
        assert cut == (len(want) > limit)


async def _reader(data: bytes) -> asyncio.StreamReader:
    r = asyncio.StreamReader()
    r.feed_data(data)
    r.feed_eof()
    return r


async def test_read_line_is_bounded() -> None:
    assert await read_line(await _reader(b"HTTP/1.0 200 OK\r\nrest"), 100) == (b"HTTP/1.0 200 OK\r", False)
    line, cut = await read_line(await _reader(b"x" * 500_000 + b"\n"), 1000)
    assert cut and line == b"x" * 1000
    assert await read_line(await _reader(b""), 10) == (b"", False)


async def test_text_lines_of_a_huge_line() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"first\n"
        for _ in range(100):
            yield b"y" * 10_000  # one line of 1 MB
        yield b"\nlast"

    lines = [line async for line in text_lines(chunks(), 64 * 1024)]
    assert lines[0] == "first" and lines[2] == "last" and len(lines) == 3
    assert lines[1] == "y" * 64 * 1024 + TRUNCATED


async def test_http_probe_with_a_status_line_over_64k_fails_and_the_loop_goes_on() -> None:
    huge = {"on": True}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if huge["on"]:
            writer.write(b"HTTP/1.0 200 " + b"O" * 200_000 + b"\r\n\r\n")
        else:
            writer.write(b"HTTP/1.0 200 OK\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        ok, why = await check_http("127.0.0.1", port, "/", 2.0)
        assert not ok and "status line over" in why

        changes: list[bool | None] = []
        failures: list[str] = []

        async def on_failure(a: AssignedContainer, o: Observed, why: str) -> None:
            failures.append(why)

        obs = Observed("r1", "cid1", "drover-web-r1", "web", 1, "running", port_map={8080: port}, started_at=1.0)
        health = {"http": {"port": 8080, "path": "/"}, "interval": 0.05, "timeout": 1, "failure_threshold": 1000}
        spec = {"image": "i", "ports": [{"container": 8080}], "health": health}
        pm = ProbeManager(
            None,  # type: ignore[arg-type]  # http probes never touch the driver
            "127.0.0.1",
            on_change=lambda: changes.append(pm.result("cid1")),
            on_failure=on_failure,
        )
        pm.sync([(AssignedContainer(id="r1", service="web", revision=1, spec=spec), obs)])
        await wait_for(lambda: changes == [False], 10, message="probe failed")
        huge["on"] = False  # the same loop sees the server recover: readiness is not frozen
        await wait_for(lambda: pm.result("cid1") is True, 10, message="probe recovered")
        await pm.stop()
        assert not failures
    finally:
        server.close()
        await server.wait_closed()


def test_logs_reply_keeps_the_newest_lines_within_its_budget() -> None:
    newest = logs_api.Newest(100)
    for i in range(1000):
        newest.add(f"line {i}")
    assert list(newest.lines)[-1] == "line 999" and newest.size <= 100 and newest.dropped > 0
    assert logs_api.fit(["a" * 50, "b" * 50, "c"], 70) == ["b" * 50, "c"]
    assert logs_api.request_tail(None) == (logs_api.DEFAULT_TAIL, True)
    assert logs_api.request_tail(10**12) == (logs_api.MAX_TAIL, True)
    assert logs_api.request_tail(5) == (5, False)
    assert logs_api.request_tail(True) == (logs_api.DEFAULT_TAIL, True)
