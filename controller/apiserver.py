"""The controller's API endpoint: each request on ``<api prefix>.<verb>`` answered in its own task, retried
writes answered from the request log, every failure turned into a typed ``ApiReply`` (never a traceback)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.msg import Msg

from drover.controller.metrics import ControllerMetrics
from drover.controller.requestlog import RequestLog
from drover.shared import wire
from drover.shared.errors import NotFoundError, PermanentError, ValidationError, WireError
from drover.shared.manifest import ManifestError
from drover.shared.models import ApiReply

API_IN_FLIGHT = 64
UNAVAILABLE_ERROR = "this controller is catching up after a pause or a reconnect (ask again, or another controller)"

Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]
Spawn = Callable[[str, Awaitable[Any]], "asyncio.Task[Any]"]


class ApiServer:
    """Answers API requests with ``handle(verb, body)``; ``handle`` raises ``KeyError`` for an unknown verb."""

    def __init__(
        self, handle: Handler, known: Callable[[str], bool], requests: RequestLog, metrics: ControllerMetrics,
        spawn: Spawn, log: Any, ready: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        """``ready(verb)``: False when this controller cannot answer ``verb`` from current state now (the read
        barrier, controller/readbarrier.py): the reply is then ``unavailable`` and the client asks again."""
        self._handle = handle
        self._ready = ready
        self._known = known
        self._requests = requests
        self._metrics = metrics
        self._spawn = spawn
        self._log = log
        self._slots = asyncio.Semaphore(API_IN_FLIGHT)

    async def on_request(self, msg: Msg) -> None:
        """nats-py runs one callback of a subscription at a time: each request is answered in its own task
        (at most ``API_IN_FLIGHT`` at once), so a cheap read never waits behind a long apply."""
        await self._slots.acquire()
        task = self._spawn("api", self._answer(msg))
        task.add_done_callback(lambda _: self._slots.release())

    async def _answer(self, msg: Msg) -> None:
        verb = msg.subject.rsplit(".", 1)[-1]
        self._metrics.api_requests.labels(verb=verb).inc()
        try:
            body = wire.decode(msg.data) if msg.data else {}
        except WireError as exc:
            data: bytes | None = ApiReply(ok=False, code="invalid", error=str(exc)).to_wire()
        else:
            try:  # a retried write (same request id) is answered as the first time, not done again
                data = await self._requests.answer(verb, body, lambda: self.reply(verb, body))
            except Exception as exc:  # the request log's bus failed
                self._log.error("api request failed", verb=verb, error=repr(exc))
                data = ApiReply(ok=False, code="failed", error=f"{verb} failed: {exc}").to_wire()
        if msg.reply and data is not None:
            with contextlib.suppress(Exception):
                await msg.respond(data)

    async def reply(self, verb: str, body: dict[str, Any]) -> bytes:
        """The encoded reply to one request: its data, or a typed error."""
        reply: ApiReply
        try:
            if not self._known(verb):
                reply = ApiReply(ok=False, code="unsupported", error=f"'{verb}' is not supported by this controller")
            elif self._ready is not None and not await self._ready(verb):
                self._metrics.api_unavailable.inc()
                reply = ApiReply(ok=False, code="unavailable", error=UNAVAILABLE_ERROR)
            else:
                reply = ApiReply(ok=True, data=await self._handle(verb, body))
        except ManifestError as exc:
            problems = [{"where": w, "message": m} for w, m in exc.problems]
            reply = ApiReply(ok=False, code="invalid", error="invalid manifest", problems=problems)
        except ValidationError as exc:
            problems = [{"where": w, "message": m} for w, m in exc.problems]
            reply = ApiReply(ok=False, code="invalid", error=str(exc), problems=problems)
        except WireError as exc:
            reply = ApiReply(ok=False, code="invalid", error=str(exc))
        except NotFoundError as exc:
            reply = ApiReply(ok=False, code="not-found", error=str(exc))
        except PermanentError as exc:
            reply = ApiReply(ok=False, code="failed", error=str(exc))
        except Exception as exc:
            self._log.error("api request failed", verb=verb, error=repr(exc), exc_info=True)
            reply = ApiReply(ok=False, code="failed", error=f"{verb} failed: {exc}")
        return reply.to_wire()
