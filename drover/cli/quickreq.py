"""One NATS request/reply over a blocking socket, for the CLI's one-shot commands (``drover apply``).

Such a command sends one request and waits for one reply. Importing nats-py and asyncio for that costs about
as much CPU as everything else the command does (≈0.1 s of a 0.25 s apply), so this module speaks the few
lines of the NATS client protocol one request needs: INFO, the TLS upgrade, CONNECT (signed with the same
JWT/nkey credentials, on the same inbox prefix as nats-py would use), SUB, PUB and the MSG/HMSG reply.

It only ever takes the happy path. Anything else (no server reachable, a refused credential, a permission
error, no responders, no reply within the first wait, a server or URL it does not handle: websockets,
``user:password@`` in the URL, a TLS server without a CA file) raises ``Unavailable``; the caller then sends
the same request (the same request id: a write is still done once) through the full client
(``drover.cli.client``), which owns every error line and exit code. This module never decides what a user
sees when something goes wrong.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from drover import __version__

if TYPE_CHECKING:
    import ssl

#: How long the reply may take before the full client takes over (its own first attempt waits as long:
#: ``client.FIRST_ATTEMPT``); a live controller answers an apply in a few milliseconds.
FIRST_WAIT = 1.5
#: Connecting and reading the server's INFO. A nats-server sends INFO as soon as it accepts; something that
#: stays silent this long is left to the full client (its connect timeout, its error line).
CONNECT_WAIT = 1.0
MAX_LINE = 4 * 1024 * 1024  # INFO lists a cluster's URLs; anything longer is not a NATS server
ENABLED = True  # tests whose fake NATS sits behind drover.cli.client turn this path off


class Unavailable(Exception):
    """This path cannot (or must not) answer: the full client sends the request instead."""


@dataclass(frozen=True)
class Credentials:
    jwt: str | None  # None: a bare nkey seed
    seed: bytes
    inbox: str  # the user's own inbox prefix (its permissions allow replies only there)


def load_credentials(path: str) -> Credentials:
    """The credentials file as ``shared.security.connect_options`` reads it (its errors are left to the full
    client: any problem here is ``Unavailable``)."""
    from drover.shared.security import load_credentials as load
    from drover.shared.security_roles import own_inbox

    try:
        loaded = load(path)
    except Exception as exc:
        raise Unavailable(f"credentials: {exc}") from None
    return Credentials(loaded.jwt, loaded.seed, own_inbox(loaded.public_key))


def request(
    servers: list[str], subject: str, payload: bytes, *, creds: str | None = None, ca: str | None = None,
    wait: float = FIRST_WAIT,
) -> bytes:
    """The payload of the first reply to ``payload`` sent on ``subject``; ``Unavailable`` for anything else.
    ``servers`` are tried in turn (the first one that connects and accepts the credentials is used)."""
    if not ENABLED:
        raise Unavailable("turned off")
    auth = load_credentials(creds) if creds else None
    tls = _tls_context(ca) if ca else None
    last: Exception = Unavailable("no server")
    for url in servers:
        try:
            conn = Connection.open(url, tls, auth)
        except Unavailable as exc:
            last = exc
            continue
        try:
            return conn.request(subject, payload, wait)
        finally:
            conn.close()
    raise Unavailable(str(last))


def _tls_context(ca: str) -> ssl.SSLContext:
    from drover.shared.security import tls_context

    try:
        return tls_context(ca)
    except Exception as exc:  # the full client reports an unreadable CA file
        raise Unavailable(f"ca: {exc}") from None


class Connection:
    """One client connection, blocking, with a deadline on every read."""

    def __init__(self, sock: socket.socket | ssl.SSLSocket, info: dict[str, Any], inbox_prefix: str) -> None:
        self.sock = sock
        self.info = info
        self.inbox_prefix = inbox_prefix
        self.buf = bytearray()

    @classmethod
    def open(cls, url: str, tls: ssl.SSLContext | None, auth: Credentials | None) -> Connection:
        parts = urlsplit(url)
        if parts.scheme not in ("nats", "tls") or parts.username is not None or not parts.hostname:
            raise Unavailable(f"not handled here: {url}")
        try:
            port = parts.port or 4222
        except ValueError:
            raise Unavailable(f"bad port: {url}") from None
        deadline = time.monotonic() + CONNECT_WAIT
        # An ASCII host name as bytes (getaddrinfo takes both; typeshed says str): a str would load the idna
        # codec (≈ 2 ms).
        host: str | bytes = parts.hostname.encode() if parts.hostname.isascii() else parts.hostname
        try:
            sock = socket.create_connection((host, port), timeout=CONNECT_WAIT)  # type: ignore[arg-type]
        except OSError as exc:
            raise Unavailable(f"connect {url}: {exc}") from None
        conn = cls(sock, {}, auth.inbox if auth else "_INBOX")
        try:
            conn.handshake(parts.hostname, tls, auth, deadline)
        except BaseException:
            conn.close()
            raise
        return conn

    def handshake(self, hostname: str, tls: ssl.SSLContext | None, auth: Credentials | None, deadline: float) -> None:
        op, rest = self._op(deadline)
        if op != b"INFO":
            raise Unavailable(f"expected INFO, got {op!r}")
        try:
            info = json.loads(rest)
        except ValueError:
            raise Unavailable("INFO is not JSON") from None
        if not isinstance(info, dict):
            raise Unavailable("INFO is not a map")
        self.info = info
        if info.get("tls_required"):
            if tls is None:  # nats-py would use the system's trust store: left to it
                raise Unavailable("TLS without a CA file")
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                self.sock = tls.wrap_socket(self.sock, server_hostname=hostname)
            except OSError as exc:  # ssl.SSLError is an OSError
                raise Unavailable(f"TLS: {exc}") from None
        self._send(b"CONNECT " + json.dumps(self.connect_options(auth), sort_keys=True).encode() + b"\r\nPING\r\n")
        while True:
            op, rest = self._op(deadline)
            if op == b"PONG":
                return
            if op not in (b"+OK", b"INFO"):
                raise Unavailable(f"connect refused: {op.decode(errors='replace')} {rest.decode(errors='replace')}")

    def connect_options(self, auth: Credentials | None) -> dict[str, Any]:
        """What nats-py sends (``Client._connect_command``) for the same options."""
        options: dict[str, Any] = {
            "verbose": False, "pedantic": False, "lang": "python3", "version": __version__, "protocol": 1,
            "name": "drover-cli",
        }
        if "headers" in self.info:  # no responders come back as a 503 status (the full client reports them)
            options["headers"] = self.info["headers"]
            options["no_responders"] = self.info["headers"]
        nonce = self.info.get("nonce")
        if auth is not None and isinstance(nonce, str):
            import nkeys

            kp = nkeys.from_seed(bytearray(auth.seed))
            options["sig"] = base64.b64encode(kp.sign(nonce.encode())).decode()
            if auth.jwt is not None:
                options["jwt"] = auth.jwt
            else:
                options["nkey"] = kp.public_key.decode()
        return options

    def request(self, subject: str, payload: bytes, wait: float) -> bytes:
        limit = self.info.get("max_payload")
        if isinstance(limit, int) and len(payload) > limit:
            raise Unavailable("over max_payload")  # the full client's exit-2 line says so
        inbox = f"{self.inbox_prefix}.{os.urandom(11).hex()}"
        self._send(b"".join([
            f"SUB {inbox} 1\r\nPUB {subject} {inbox} {len(payload)}\r\n".encode(), payload, b"\r\n",
        ]))
        deadline = time.monotonic() + wait
        while True:
            op, rest = self._op(deadline)
            if op == b"MSG":
                return self._body(rest, headers=False)
            if op == b"HMSG":
                return self._body(rest, headers=True)
            if op == b"PING":
                self._send(b"PONG\r\n")
            elif op not in (b"PONG", b"+OK", b"INFO"):  # -ERR (a permission violation, ...) or garbage
                raise Unavailable(f"{op.decode(errors='replace')} {rest.decode(errors='replace')}")

    def _body(self, rest: bytes, *, headers: bool) -> bytes:
        fields = rest.split()
        try:
            total = int(fields[-1])
            head = int(fields[-2]) if headers else 0
        except (ValueError, IndexError):
            raise Unavailable("bad MSG line") from None
        data = self._exact(total + 2)[:total]
        if headers:
            status = data[:head].split(b"\r\n", 1)[0].split()
            if len(status) > 1:  # "NATS/1.0 503" (no responders) or another status: not a reply
                raise Unavailable(f"status {status[1].decode(errors='replace')}")
        return data[head:]

    # --- socket ------------------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise Unavailable(f"send: {exc}") from None

    def _fill(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Unavailable("timed out")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except OSError as exc:  # socket.timeout is an OSError too
            raise Unavailable(f"recv: {exc}") from None
        if not chunk:
            raise Unavailable("connection closed")
        self.buf += chunk

    def _op(self, deadline: float) -> tuple[bytes, bytes]:
        """The next protocol line as (operation, rest)."""
        while (end := self.buf.find(b"\r\n")) < 0:
            if len(self.buf) > MAX_LINE:
                raise Unavailable("line too long")
            self._fill(deadline)
        line = bytes(self.buf[:end])
        del self.buf[:end + 2]
        op, _, rest = line.partition(b" ")
        return op.upper(), rest

    def _exact(self, n: int) -> bytes:
        deadline = time.monotonic() + CONNECT_WAIT + n / 1e6  # the message is already on its way
        while len(self.buf) < n:
            self._fill(deadline)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
