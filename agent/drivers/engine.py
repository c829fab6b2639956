"""Reading the local Docker engine without aiodocker: ``GET`` one JSON document over the engine's unix socket.

aiodocker is built on aiohttp, whose import is about a quarter of an agent's start (0.3-0.8 s on a busy
machine). An agent restarted by ``drover up`` must heartbeat within the node grace, and its first heartbeat
must report what it observed (the controller takes a node's report as the truth about its replicas), so the
driver lists the node's containers through this reader until aiodocker is loaded anyway (the first create,
stop, event stream or log): the first heartbeat no longer waits for aiohttp.

Only the default local engine is read this way (no Docker context, ``DOCKER_HOST`` unset or ``unix://``);
any other setup (TCP, TLS, ssh, contexts) is left to aiodocker, which knows them.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

SOCKETS = (Path("/run/docker.sock"), Path("/var/run/docker.sock"))  # aiodocker's search order
TIMEOUT = 10.0
MAX_BODY = 64 * 1024 * 1024  # a listing of one node's containers is far smaller; a bound, not a limit in use


class EngineError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def _uses_context(config: Path) -> bool:
    """Whether the Docker CLI config names a current context other than the default (aiodocker honours it)."""
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("currentContext") not in (None, "", "default")


def local_socket(env: dict[str, str] | None = None, config: Path | None = None) -> str | None:
    """The unix socket of the engine aiodocker would talk to, when that is a local socket; None otherwise."""
    env = dict(os.environ) if env is None else env
    if env.get("DOCKER_CONTEXT"):
        return None
    host = env.get("DOCKER_HOST")
    if host:
        return host.removeprefix("unix://") if host.startswith("unix://") else None
    if _uses_context(config or Path(env.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"):
        return None
    return next((str(p) for p in SOCKETS if p.is_socket()), None)


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return bytes(out)


def parse_response(raw: bytes) -> tuple[int, Any]:
    """(status, decoded JSON body or None) of a whole HTTP/1.x response."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise EngineError(502, "truncated response from the engine")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise EngineError(502, f"bad status line from the engine: {lines[0][:80]!r}")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    try:
        return int(parts[1]), json.loads(body) if body.strip() else None
    except ValueError as exc:
        raise EngineError(502, f"bad JSON from the engine: {exc}") from None


async def get_json(socket_path: str, path: str, params: dict[str, str] | None = None,
                   timeout: float = TIMEOUT) -> Any:
    """``GET path`` on the engine; the decoded body. ``EngineError`` for a status ≥ 400 (with the engine's
    message), OSError when the socket cannot be reached."""
    target = quote(path) + (f"?{urlencode(params)}" if params else "")
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_unix_connection(socket_path)
        try:
            # HTTP/1.0: the engine sends the body whole and closes the connection (no keep-alive to manage)
            writer.write(f"GET {target} HTTP/1.0\r\nHost: docker\r\n\r\n".encode("ascii"))
            await writer.drain()
            raw = bytearray()
            while chunk := await reader.read(65536):
                raw += chunk
                if len(raw) > MAX_BODY:
                    raise EngineError(502, "response from the engine too large")
        finally:
            writer.close()
    status, body = parse_response(bytes(raw))
    if status >= 400:
        message = body.get("message") if isinstance(body, dict) else None
        raise EngineError(status, str(message or f"HTTP {status}"))
    return body
