"""Talking to a drover cluster from the CLI: connect to NATS, request a controller verb, map failures to
``CliError`` with the right exit code."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from drover.cli import natsload
from drover.cli.context import Target
from drover.cli.errors import EXIT_FAILED, EXIT_INVALID, CliError, PermissionDenied, Unsupported, reply_error
from drover.cli.reply import Reply, is_unavailable
from drover.cli.signals import run_until_signal
from drover.shared import idempotency, wire
from drover.shared.aio import race
from drover.shared.errors import WireError
from drover.shared.retry import Backoff
from drover.shared.subjects import Names

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg

# nats-py and the pydantic records are imported only when a command really talks to a cluster (see
# natsload): `drover --help` and bad arguments never pay for them.

CONNECT_TIMEOUT = 3.0
REQUEST_TIMEOUT = 10.0
# A request unanswered this long is sent again, each attempt waiting longer (slow but live controllers still
# answer: every attempt's reply comes to the same inbox). The API is a NATS queue group and the server picks
# one member at random per message, also a paused one (SIGSTOP, GC, starved loop): attempt k is sent in
# min(2^k, MAX_COPIES) copies so that one almost surely reaches a live controller (two controllers, one
# paused, 10 s: 11 random picks all missing is 1 in 2,048). Writes carry a request id, so copies and retries
# are done once (controller/requestlog.py); reads are harmless to repeat.
FIRST_ATTEMPT = 1.5
ATTEMPT_GROWTH = 1.5
MAX_COPIES = 4
# "No responders" (no controller subscribed at all) is asked again, with growing delays, for this long within
# the request's timeout: the only controller of a cluster may be restarting (``drover up`` restarts a dead
# one about 1 s later; it subscribes once its store is open, 1-3 s more).
NO_RESPONDERS_PATIENCE = 8.0

T = TypeVar("T")


__all__ = ["EXIT_FAILED", "EXIT_INVALID", "CliError", "Client", "Reply", "Unsupported", "connect", "reply_error", "run"]


def _nats_errors() -> tuple[type[Exception], type[Exception]]:
    """(NoRespondersError, nats' TimeoutError), importing nats-py on first use."""
    natsload.load()
    from nats.errors import NoRespondersError
    from nats.errors import TimeoutError as NatsTimeoutError

    return NoRespondersError, NatsTimeoutError


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "no server answered"
    if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror or exc})"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, _nats_errors()[1])):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc).strip()
    return text or type(exc).__name__


def attempt_waits(timeout: float, first: float = FIRST_ATTEMPT, growth: float = ATTEMPT_GROWTH) -> list[float]:
    """How long each attempt of a request waits for a reply; they add up to ``timeout``. A remainder shorter
    than ``first`` is added to the last attempt instead of making a hurried one of its own."""
    waits: list[float] = []
    left, wait = timeout, first
    while left > 0:
        this = left if left - wait < first else wait
        waits.append(this)
        left -= this
        wait *= growth
    return waits


def unreachable(url: str, reason: str) -> CliError:
    return CliError(
        f"cannot reach the drover cluster at {url}: {reason} (is 'drover up' running? set --nats or DROVER_NATS)"
    )


class Denials:
    """Permission violations the server reported on this connection (asynchronously: a refused publish
    gets no reply, only an ``-ERR``), so that a request refused by the server fails at once as 'permission
    denied' instead of timing out."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._changed = asyncio.Event()

    def add(self, exc: BaseException) -> None:
        self.errors.append(str(exc))
        self._changed.set()

    def about(self, subject: str) -> str | None:
        # The server lower-cases the subject in its message; compare the same way.
        needle = f'"{subject.lower()}"'
        return next((e for e in self.errors if needle in e.lower()), None)

    async def wait_for(self, subject: str) -> str:
        while True:
            found = self.about(subject)
            if found is not None:
                return found
            self._changed.clear()
            await self._changed.wait()


def permission_denied(what: str, detail: str) -> CliError:
    return PermissionDenied(f"permission denied: the cluster refused {what} for these credentials ({detail.strip()})")


async def connect(
    target: Target, *, name: str = "drover-cli", keep_reconnecting: bool = False, denials: Denials | None = None
) -> NATS:
    """Connect once (two quick attempts); any failure is the 'cannot reach' error. ``keep_reconnecting``
    lets long-running commands (``-f``) ride out a NATS restart afterwards. ``target.creds``/``target.ca``
    authenticate and encrypt; permission violations are collected in ``denials``."""
    from drover.shared.firstconnect import FirstConnect

    async def after_connect(exc: Exception) -> None:
        from drover.shared.security import is_permission_error

        if is_permission_error(exc) and denials is not None:
            denials.add(exc)

    guard = FirstConnect(len(target.servers), after=after_connect)

    # asyncio warns "returning true from eof_received() has no effect when using ssl" when a TLS peer
    # closes: noise for a CLI user.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    security: dict[str, Any] = {}
    if target.creds or target.ca:  # the nkeys/JWT code loads only for a secured cluster (a fast plain `get`)
        from drover.shared.security import connect_options
        from drover.shared.security_jwt import CredentialsError

        try:
            security = connect_options(target.creds, target.ca)
        except CredentialsError as exc:
            raise CliError(str(exc), code=EXIT_INVALID) from None
        except (OSError, ValueError) as exc:  # an unreadable or malformed CA file
            raise CliError(f"cannot use the CA file {target.ca}: {exc}", code=EXIT_INVALID) from None

    async def quiet(*_: Any) -> None:
        return None

    nats = natsload.load(target.nats)
    try:
        nc: NATS = await asyncio.wait_for(
            nats.connect(
                servers=target.servers,
                **security,
                name=name,
                connect_timeout=CONNECT_TIMEOUT,
                allow_reconnect=True,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.1,
                error_cb=guard.on_error,
                disconnected_cb=quiet,
                reconnected_cb=quiet,
                closed_cb=quiet,
            ),
            timeout=CONNECT_TIMEOUT * 2 + 1,
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # NoServersError or ConnectAborted after the attempts; the cause is in the guard
        if guard.refused:
            who = f"the credentials {target.creds}" if target.creds else "an anonymous connection (no credentials)"
            raise CliError(
                f"the drover cluster at {target.nats} refused {who}: authorization violation "
                "(set --creds or DROVER_CREDS, or use the context 'drover up' wrote)"
            ) from exc
        cause = guard.errors[-1] if guard.errors else exc
        reason = _reason(cause)
        if "certificate" in reason.lower():
            reason += " (the server's certificate is not signed by the CA given with --ca / DROVER_CA / the context)"
        raise unreachable(target.nats, reason) from exc
    guard.connected()
    if keep_reconnecting:
        nc.options["max_reconnect_attempts"] = -1
        nc.options["reconnect_time_wait"] = 0.5
    return nc


class Client:
    """One connection to one cluster; use as ``async with Client(target) as c: await c.call(...)``."""

    first_attempt = FIRST_ATTEMPT  # see FIRST_ATTEMPT (tests shorten it)
    no_responders_patience = NO_RESPONDERS_PATIENCE  # see NO_RESPONDERS_PATIENCE (tests shorten it)

    def __init__(self, target: Target, *, keep_reconnecting: bool = False):
        self.target = target
        self.names = Names(target.cluster)
        self.keep_reconnecting = keep_reconnecting
        self.denials = Denials()
        self._nc: NATS | None = None

    @property
    def nc(self) -> NATS:
        assert self._nc is not None, "not connected"
        return self._nc

    async def __aenter__(self) -> Client:
        self._nc = await connect(self.target, keep_reconnecting=self.keep_reconnecting, denials=self.denials)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.close(), 2.0)
            self._nc = None

    def no_controller(self, why: str) -> CliError:
        return CliError(
            f"no controller answered on cluster '{self.target.cluster}' at {self.target.nats} ({why}); "
            "is 'drover controller' (or 'drover up') running for this cluster? set --cluster or DROVER_CLUSTER"
        )

    async def request_raw(self, verb: str, body: dict[str, Any], timeout: float = REQUEST_TIMEOUT) -> Reply:
        """The controller's reply to ``verb``; no controller → ``CliError`` (exit 1)."""
        NoRespondersError, NatsTimeoutError = _nats_errors()
        if verb in idempotency.WRITE_VERBS and not body.get(idempotency.KEY):
            # one id for every attempt and copy of this write: the controllers do it once
            body = {**body, idempotency.KEY: idempotency.new_request_id()}
        payload = wire.encode(body)
        limit = self.nc.max_payload
        if limit and len(payload) > limit:
            # what the user sent is too big (e.g. manifests whose YAML aliases expand a lot): bad input
            raise CliError(
                f"the {verb} request is {len(payload):,} bytes, more than the server accepts ({limit:,} bytes)",
                code=EXIT_INVALID,
            )
        try:
            subject = self.names.api(verb)
            msg = await self.guarded(subject, self.exchange(subject, payload, timeout), verb)
        except NoRespondersError:
            raise self.no_controller("no responders") from None
        except (TimeoutError, NatsTimeoutError):
            raise self.no_controller(f"timed out after {timeout:g}s") from None
        except CliError:
            raise
        except Exception as exc:
            raise CliError(f"request {verb} to {self.target.nats} failed: {_reason(exc)}") from exc
        try:
            return Reply.from_wire(msg.data)
        except WireError as exc:
            raise CliError(f"bad reply from the controller to {verb}: {exc}") from exc

    async def exchange(self, subject: str, payload: bytes, timeout: float) -> Msg:
        """Send a request, and again (see ``FIRST_ATTEMPT``) while no reply came, until ``timeout``; the
        first reply to any attempt wins. Raises NoRespondersError (nobody subscribed to ``subject`` for
        ``no_responders_patience``) or TimeoutError."""
        NoRespondersError, NatsTimeoutError = _nats_errors()
        from nats.js.api import Header

        loop = asyncio.get_running_loop()
        give_up = loop.time() + min(timeout, self.no_responders_patience)
        end = loop.time() + timeout
        backoff = Backoff(initial=0.1, cap=1.0)
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        unavailable: Msg | None = None
        try:
            for attempt, wait in enumerate(attempt_waits(timeout, self.first_attempt)):
                for _ in range(min(2**attempt, MAX_COPIES)):
                    await self.nc.publish(subject, payload, reply=inbox)
                until = loop.time() + wait
                while (left := until - loop.time()) > 0:
                    try:
                        msg = await sub.next_msg(timeout=left)
                    except NatsTimeoutError:
                        break
                    if msg.data and is_unavailable(msg.data):
                        # A controller not yet caught up after a pause or reconnect (its read barrier): ask
                        # again shortly, which may reach another controller; its reply stands if none comes.
                        unavailable = msg
                        delay = backoff.next_delay()
                        if loop.time() + delay > end:
                            return msg
                        await asyncio.sleep(delay)
                        await self.nc.publish(subject, payload, reply=inbox)
                        continue
                    if not (msg.headers and msg.headers.get(Header.STATUS) == "503"):
                        return msg
                    # Nobody subscribes right now: ask again shortly (the same request id for a write)
                    delay = backoff.next_delay()
                    if loop.time() + delay > give_up:
                        raise NoRespondersError
                    await asyncio.sleep(delay)
                    await self.nc.publish(subject, payload, reply=inbox)
            if unavailable is not None:
                return unavailable
            raise TimeoutError(f"no reply on {subject} within {timeout:g}s")
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def guarded(self, subject: str, coro: Awaitable[T], what: str) -> T:
        """Await ``coro`` (a request on ``subject``); if the server reports a permission violation for that
        subject meanwhile, fail at once with 'permission denied' (exit 1)."""
        r = await race(coro, self.denials.wait_for(subject), "request")
        if r.finished:
            return cast(T, r.result)  # (None only when T admits it)
        raise permission_denied(what, r.rival or "")

    async def call(self, verb: str, body: dict[str, Any], timeout: float = REQUEST_TIMEOUT) -> Any:
        """``data`` of a successful reply; a failed reply becomes ``CliError`` (exit 2 for ``invalid``)."""
        reply = await self.request_raw(verb, body, timeout)
        if reply.ok:
            return reply.data
        raise reply_error(verb, reply)

    async def call_new_verb(self, verb: str, body: dict[str, Any], what: str, timeout: float = REQUEST_TIMEOUT) -> Any:
        """Like ``call`` for verbs older controllers may not know: ``unsupported`` (or no responder while
        another verb is answered) becomes ``Unsupported``."""
        try:
            reply = await self.request_raw(verb, body, timeout)
        except PermissionDenied:
            raise
        except CliError:
            # Nobody answered this verb: is it the controller missing, or only the verb?
            probe = await self.request_raw("get_nodes", {"name": None}, timeout=min(timeout, 5.0))
            if probe is not None:
                raise Unsupported(f"{what} is not supported by this controller yet") from None
            raise
        if reply.ok:
            return reply.data
        if reply.code == "unsupported":
            raise Unsupported(f"{what} is not supported by this controller yet")
        raise reply_error(verb, reply)

    async def agent_request(self, node: str, verb: str, body: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        return await self.agent_subject_request(
            self.names.agent_api(node, verb), body, timeout=timeout, who=f"the agent of node {node}"
        )

    async def agent_subject_request(
        self, subject: str, body: dict[str, Any], timeout: float = 5.0, who: str = "no agent"
    ) -> dict[str, Any]:
        """A request to agents (plain wire dicts, not ``ApiReply``)."""
        NoRespondersError, NatsTimeoutError = _nats_errors()
        try:
            msg = await self.guarded(subject, self.nc.request(subject, wire.encode(body), timeout=timeout), subject)
        except NoRespondersError:
            raise CliError(f"{who} did not answer (no responders)") from None
        except (TimeoutError, NatsTimeoutError):
            raise CliError(f"{who} did not answer (timed out after {timeout:g}s)") from None
        try:
            return wire.decode(msg.data)
        except WireError as exc:
            raise CliError(f"bad reply from {who}: {exc}") from exc

    async def subscribe(self, subject: str) -> AsyncIterator[Any]:
        sub = await self.nc.subscribe(subject)
        try:
            async for msg in sub.messages:
                yield msg
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


def run(target: Target, fn: Callable[[Client], Awaitable[T]], *, keep_reconnecting: bool = False) -> T:
    """Run ``fn(client)`` in a fresh event loop with a connected client. Long-running commands
    (``keep_reconnecting``) end quietly on SIGINT/SIGTERM: the result is then None."""

    async def main() -> T:
        async with Client(target, keep_reconnecting=keep_reconnecting) as c:
            return await fn(c)

    if not keep_reconnecting:
        return asyncio.run(main())
    return asyncio.run(run_until_signal(main()))  # type: ignore[return-value]


