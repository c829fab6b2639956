"""Bring a re-signed account JWT (new revocations) to running nats-servers, and to the configs they restart with.

The servers hold the cluster account in a MEMORY resolver preloaded from their config. They also take an
account JWT published on ``$SYS.REQ.ACCOUNT.<account>.CLAIMS.UPDATE`` by a user of the system account, if the
operator signed it: each server answers (``{"data": {"code": 200, "message": "jwt updated"}}``), refuses the
revoked users' next connections and drops the ones open now. An update reaches every server of a NATS
cluster (the system account's subjects are routed), so one connection suffices. The system user is made on
the spot from the system account's seed in the security directory and never written anywhere.

A server restarted later reads its config again: ``drover credentials revoke`` rewrites the configs of the
servers ``drover up`` runs; on other hosts the config (``drover credentials server-config``) is copied again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from dataclasses import dataclass

import nats
import nkeys
from nats.aio.msg import Msg

from drover.shared import security_jwt as sj
from drover.shared.firstconnect import FirstConnect
from drover.shared.security import SecurityDir, tls_context


@dataclass(frozen=True)
class ServerAnswer:
    server: str
    ok: bool
    message: str


@dataclass(frozen=True)
class PushResult:
    answers: list[ServerAnswer]
    expected: int  # servers in the NATS cluster (as the one connected to advertises them)

    @property
    def complete(self) -> bool:
        """Every server answered, and each took the update."""
        return len(self.answers) >= self.expected and all(a.ok for a in self.answers)


def _system_user(sec: SecurityDir) -> tuple[str, bytes]:
    """A JWT and seed of a throw-away system-account user (signed by the system account's key)."""
    seed = sj.new_seed("user")
    token = sj.user_jwt(sec.seed("system"), sj.public_key(seed), name="drover revoke", perms=sj.Permissions())
    return token, seed


def _answer(data: bytes) -> ServerAnswer:
    try:
        body = json.loads(data)
        server = str(body.get("server", {}).get("name", "?"))
        if "error" in body:
            return ServerAnswer(server, False, str(body["error"].get("description", body["error"])))
        reply = body.get("data", {})
        return ServerAnswer(server, reply.get("code") == 200, str(reply.get("message", "")))
    except (ValueError, AttributeError):
        return ServerAnswer("?", False, data[:200].decode(errors="replace"))


async def push_account(
    servers: list[str], sec: SecurityDir, account_jwt: str, *, ca: str | None = None, timeout: float = 5.0
) -> PushResult:
    """Publish ``account_jwt`` to the running servers; the answers of those that replied (every server of
    the cluster, or fewer when ``timeout`` passed first). Raises when no server can be reached."""
    token, seed = _system_user(sec)
    kp = nkeys.from_seed(bytearray(seed))

    def sign(nonce: str) -> bytes:
        return base64.b64encode(kp.sign(nonce.encode()))

    # Collects errors (nats-py's default prints a traceback) and bounds the first connect (see firstconnect).
    guard = FirstConnect(len(servers))

    async def quiet() -> None:
        return None

    # nats-py's protocol makes asyncio warn "returning true from eof_received() has no effect when using ssl"
    # when this TLS connection closes (as shared.bus does for daemons): noise on a user's terminal.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    # Like the CLI's connect: one bounded pass over the servers (nats-py's allow_reconnect=False keeps retrying
    # a refused first connect); the cause of a failure is the last error seen.
    try:
        nc = await asyncio.wait_for(nats.connect(
            servers, user_jwt_cb=lambda: token.encode(), signature_cb=sign, tls=tls_context(ca or str(sec.ca)),
            allow_reconnect=True, max_reconnect_attempts=1, reconnect_time_wait=0.1, connect_timeout=timeout,
            error_cb=guard.on_error, disconnected_cb=quiet, closed_cb=quiet, name="drover credentials revoke",
        ), timeout * 2 + 1)
    except Exception as exc:
        kp.wipe()
        cause = guard.errors[-1] if guard.errors else exc
        raise ConnectionError(str(cause) or type(cause).__name__) from exc
    guard.connected()
    try:
        # Every server of the cluster answers; single servers advertise no other URL.
        expected = max(1, len(nc._server_info.get("connect_urls") or []))
        answers: list[ServerAnswer] = []
        done = asyncio.Event()

        async def collect(msg: Msg) -> None:
            answers.append(_answer(msg.data))
            if len(answers) >= expected:
                done.set()

        inbox = nc.new_inbox()
        await nc.subscribe(inbox, cb=collect)
        await nc.publish(f"$SYS.REQ.ACCOUNT.{sec.account_public}.CLAIMS.UPDATE", account_jwt.encode(), reply=inbox)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)
        return PushResult(answers=answers, expected=expected)
    finally:
        kp.wipe()
        await nc.close()


__all__ = ["PushResult", "ServerAnswer", "push_account"]
