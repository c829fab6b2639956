"""Test backends and clients for the proxy tests: small asyncio servers on 127.0.0.1 with one
behaviour each, and a client that sends a line and reads the answer."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from drover.agent.proxy import Backend

HOST = "127.0.0.1"

Handler = Callable[["TestBackend", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class TestBackend:
    """A backend server; ``accepted`` counts its connections, ``open`` those still open."""

    __test__ = False  # not a test class

    name: str
    server: asyncio.Server | None = None
    accepted: int = 0
    open: int = 0
    sent: int = 0  # bytes written by the handler (the "flood" behaviour)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    @property
    def backend(self) -> Backend:
        return Backend(HOST, self.port, self.name)


# ---------------------------------------------------------------------- behaviours
async def hello(b: TestBackend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer every line with the backend's name, until the client closes."""
    while line := await reader.readline():
        writer.write(f"{b.name} {line.decode().strip()}\n".encode())
        await writer.drain()


async def echo(b: TestBackend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Send back everything; on EOF, half-close in turn."""
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.write_eof()


async def count(b: TestBackend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read until EOF (the client's half-close), then answer with the size and sha256 of it all."""
    digest = hashlib.sha256()
    total = 0
    while data := await reader.read(65536):
        digest.update(data)
        total += len(data)
    writer.write(f"{b.name} {total} {digest.hexdigest()}\n".encode())
    await writer.drain()


async def reset(b: TestBackend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, then reset at once (docker-proxy for a container that does not listen)."""
    writer.transport.abort()


async def close(b: TestBackend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, then close cleanly at once, without a byte."""
    writer.close()


async def flood(b: TestBackend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """After the first line, send 64 KiB chunks for as long as the peer takes them."""
    await reader.readline()
    chunk = b"x" * 65536
    while True:
        writer.write(chunk)
        b.sent += len(chunk)
        await writer.drain()


async def start_backend(name: str, handler: Handler) -> TestBackend:
    b = TestBackend(name)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        b.accepted += 1
        b.open += 1
        task = asyncio.current_task()
        assert task is not None
        b.tasks.add(task)
        try:
            await handler(b, reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            b.open -= 1
            b.tasks.discard(task)
            writer.close()

    b.server = await asyncio.start_server(on_connect, HOST, 0)
    return b


async def stop_backend(b: TestBackend) -> None:
    if b.server is not None:
        b.server.close()
    for task in list(b.tasks):
        task.cancel()
    for task in list(b.tasks):
        with contextlib.suppress(BaseException):
            await task


# ---------------------------------------------------------------------- clients
@contextlib.asynccontextmanager
async def connect(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def ask(port: int, line: str = "ping", timeout: float = 5.0) -> str:
    """Connect, send a line, return the answer line (stripped), close."""
    async with connect(port) as (reader, writer):
        writer.write(f"{line}\n".encode())
        answer = await asyncio.wait_for(reader.readline(), timeout)
        return answer.decode().strip()


async def swallow_then_reset(b: TestBackend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read 512 KiB without answering, then reset."""
    await reader.readexactly(512 * 1024)
    writer.transport.abort()


async def answer_then_reset(b: TestBackend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer part of a response, then reset: too late for a retry."""
    await reader.readline()
    writer.write(b"partial")
    await writer.drain()
    writer.transport.abort()
