"""The plain reader of the local Docker engine (agent/drivers/engine.py): responses and where it applies."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from drover.agent.drivers import engine


def test_a_whole_response_is_decoded() -> None:
    body = json.dumps([{"Id": "abc"}]).encode()
    raw = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body
    assert engine.parse_response(raw) == (200, [{"Id": "abc"}])


def test_a_chunked_response_is_joined() -> None:
    chunks = [b'[{"a"', b": 1}", b"]"]
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    assert engine.parse_response(raw) == (200, [{"a": 1}])


@pytest.mark.parametrize("raw", [b"HTTP/1.0 200 OK\r\n", b"garbage\r\n\r\n[]", b"HTTP/1.0 200 OK\r\n\r\n[{"])
def test_a_broken_response_is_an_engine_error(raw: bytes) -> None:
    with pytest.raises(engine.EngineError):
        engine.parse_response(raw)


async def test_an_error_status_carries_the_engines_message(tmp_path: Path) -> None:
    path = str(tmp_path / "d.sock")

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        assert request.startswith(b"GET /containers/x%201/json HTTP/1.0\r\n"), request
        writer.write(b'HTTP/1.0 404 Not Found\r\n\r\n{"message": "No such container: x 1"}')
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(answer, path)
    async with server:
        with pytest.raises(engine.EngineError) as info:
            await engine.get_json(path, "/containers/x 1/json")
    assert info.value.status == 404 and info.value.message == "No such container: x 1"


def test_only_a_local_socket_is_read(tmp_path: Path) -> None:
    sock_path = tmp_path / "docker.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock_path))
    try:
        nothing = tmp_path / "none.json"
        assert engine.local_socket({"DOCKER_HOST": f"unix://{sock_path}"}, nothing) == str(sock_path)
        assert engine.local_socket({"DOCKER_HOST": "tcp://127.0.0.1:2375"}, nothing) is None
        assert engine.local_socket({"DOCKER_CONTEXT": "remote"}, nothing) is None
        config = tmp_path / "config.json"
        config.write_text(json.dumps({"currentContext": "remote"}))
        assert engine.local_socket({}, config) is None  # a context is aiodocker's to follow
        config.write_text(json.dumps({"currentContext": "default"}))
        assert engine.local_socket({}, config) in (None, *(str(p) for p in engine.SOCKETS))
    finally:
        s.close()
