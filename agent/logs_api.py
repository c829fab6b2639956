"""The agent's ``logs`` request/reply API (docs/BUS.md).

Request ``{"container": replica id or name, "tail": int|None, "follow": bool, "stream": subject}``.
Reply ``{"ok": true, "lines": [...], "truncated": bool}`` (or ``{"ok": false, "error": ...}``). With ``follow``
the reply carries what the container has logged so far (its last ``tail`` lines) and later lines are
published as ``{"lines": [...]}`` to ``stream`` while the client keeps sending ``{"alive": true}`` to
``<stream>.alive`` (at least every 5 s); then ``{"eof": true}``.

Bounded, whatever the log: the driver streams lines (each cut at 64 KiB), a request without ``tail`` reads
the last ``DEFAULT_TAIL`` lines, ``tail`` is capped at ``MAX_TAIL``, a reply keeps only its newest lines
within ``MAX_REPLY`` bytes (``truncated`` says when lines were left out), a follow stream's queue is bounded
(the driver's stream waits), and at most ``MAX_REQUESTS`` requests are served at once per agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from drover.agent.drivers.base import Driver, Observed
from drover.shared import wire
from drover.shared.errors import WireError
from drover.shared.subjects import is_inbox

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg

log = structlog.get_logger("drover.agent.logs")

MAX_REPLY = 900_000  # NATS' default max payload is 1 MiB
LINE_OVERHEAD = 8  # msgpack framing per line, counted against MAX_REPLY
DEFAULT_TAIL = 10_000  # lines read when a request names no tail (`drover logs NAME`)
MAX_TAIL = 100_000
MAX_REQUESTS = 32  # log requests (follow streams included) served at once by one agent
STREAM_QUEUE = 1_000  # lines buffered between the driver's follow stream and the publisher
ALIVE_TIMEOUT = 5.0
QUIET = 0.2  # the reply's backlog is what arrives before this much silence …
BACKLOG_WAIT = 0.5  # … or this long, or the ``tail`` lines; later lines go to the stream
_DONE = object()

Spawn = Callable[[str, Coroutine[Any, Any, None]], asyncio.Task[Any]]


class Newest:
    """The newest lines within a byte budget: older lines fall out as newer ones come (memory stays bounded
    however long the input)."""

    def __init__(self, limit: int = MAX_REPLY, max_lines: int | None = None) -> None:
        self.limit = limit
        self.max_lines = max_lines
        self.lines: deque[str] = deque()
        self.size = 0
        self.dropped = 0

    def add(self, line: str) -> None:
        self.lines.append(line)
        self.size += len(line) + LINE_OVERHEAD
        while self.lines and (
            self.size > self.limit or (self.max_lines is not None and len(self.lines) > self.max_lines)
        ):
            self.size -= len(self.lines.popleft()) + LINE_OVERHEAD
            self.dropped += 1


def fit(lines: Sequence[str], limit: int = MAX_REPLY) -> list[str]:
    """The last lines whose total size fits ``limit``."""
    newest = Newest(limit)
    for line in lines:
        newest.add(line)
    return list(newest.lines)


def request_tail(value: Any) -> tuple[int, bool]:
    """(lines to read, whether the client's request was cut down) for a request's ``tail``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return DEFAULT_TAIL, True
    return (MAX_TAIL, True) if value > MAX_TAIL else (value, False)


async def newest_lines(lines: AsyncIterator[str], limit: int = MAX_REPLY, max_lines: int | None = None) -> Newest:
    newest = Newest(limit, max_lines)
    async for line in lines:
        newest.add(line)
    return newest


class LogsApi:
    """Serves ``agent_api(node, "logs")``: ``nc`` the bus, ``driver`` the runtime, ``observed()`` the
    containers last seen, ``spawn`` the supervisor's one-shot tasks."""

    def __init__(
        self,
        nc: NATS,
        subject: str,
        node: str,
        driver: Driver,
        observed: Callable[[], Sequence[Observed]],
        spawn: Spawn,
        *,
        max_requests: int | None = None,
    ):
        self.nc = nc
        self.subject = subject
        self.node = node
        self.driver = driver
        self.observed = observed
        self.spawn = spawn
        self.max_requests = MAX_REQUESTS if max_requests is None else max_requests
        self.active = 0
        self._sub: Any = None

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(self.subject, cb=self._on_request)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _on_request(self, msg: Msg) -> None:
        if not is_inbox(msg.reply):  # replies go only to the requester's own inbox
            return
        if self.active >= self.max_requests:  # refused at once: a flood never queues work on the agent
            await self._reply(
                msg, {"ok": False, "error": f"node {self.node} serves {self.active} log requests already; retry later"}
            )
            return
        self.active += 1
        self.spawn("logs-request", self._serve(msg))

    async def _serve(self, msg: Msg) -> None:
        try:
            await self._handle(msg)
        finally:
            self.active -= 1

    def _find(self, key: str) -> Observed | None:
        observed = self.observed()
        found = [o for o in observed if key in (o.id, o.name, o.container_id)]
        if not found and len(key) >= 6:
            found = [o for o in observed if o.container_id.startswith(key)]
        if not found:
            return None
        return max(found, key=lambda o: (o.running, o.started_at or 0.0))

    async def _reply(self, msg: Msg, body: dict[str, Any]) -> None:
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(wire.encode(body))

    async def _handle(self, msg: Msg) -> None:
        try:
            req = wire.decode(msg.data)
        except WireError as exc:
            await self._reply(msg, {"ok": False, "error": str(exc)})
            return
        key = str(req.get("container") or "")
        tail, capped = request_tail(req.get("tail"))
        follow = bool(req.get("follow"))
        stream = req.get("stream")
        obs = self._find(key)
        if obs is None:
            await self._reply(msg, {"ok": False, "error": f"container {key!r} not found on node {self.node}"})
            return
        if follow and stream and not is_inbox(stream):
            await self._reply(msg, {"ok": False, "error": "stream must be the requester's _INBOX. subject"})
            return
        if not follow or not isinstance(stream, str) or not stream:
            try:
                # One line more than the cap: whether older lines exist is then known (``truncated``).
                more = tail + 1 if capped else tail
                newest = await newest_lines(self.driver.logs(obs.container_id, more, False), max_lines=tail)
            except Exception as exc:
                await self._reply(msg, {"ok": False, "error": f"logs of {key}: {exc}"})
                return
            # ``truncated``: older lines were left out (past the default tail or the byte limit).
            await self._reply(msg, {"ok": True, "lines": list(newest.lines), "truncated": bool(newest.dropped)})
            return
        await self._follow(msg, obs, tail, stream)

    async def _follow(self, msg: Msg, obs: Observed, tail: int, stream: str) -> None:
        queue: asyncio.Queue[Any] = asyncio.Queue(STREAM_QUEUE)  # bounded: a fast logger waits for the bus

        async def pump() -> None:
            try:
                async for line in self.driver.logs(obs.container_id, tail, True):
                    await queue.put(line)
            finally:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(_DONE)

        pump_task = self.spawn(f"logs-pump:{obs.id}", pump())
        done = False
        try:
            backlog = Newest()
            deadline = time.monotonic() + BACKLOG_WAIT
            while len(backlog.lines) + backlog.dropped < tail:
                left = min(QUIET, deadline - time.monotonic())
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    break
                if item is _DONE:
                    done = True
                    break
                backlog.add(item)
            await self._reply(msg, {"ok": True, "lines": list(backlog.lines), "truncated": bool(backlog.dropped)})
            if not done:
                await self._stream(queue, stream, pump_task)
        finally:
            pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump_task
            await self._publish(stream, {"eof": True})

    async def _stream(self, queue: asyncio.Queue[Any], stream: str, pump_task: asyncio.Task[Any]) -> None:
        last_alive = time.monotonic()

        async def alive(_: Msg) -> None:
            nonlocal last_alive
            last_alive = time.monotonic()

        sub = await self.nc.subscribe(f"{stream}.alive", cb=alive)
        try:
            while time.monotonic() - last_alive < ALIVE_TIMEOUT:
                try:
                    item = await asyncio.wait_for(queue.get(), 0.5)
                except TimeoutError:
                    if pump_task.done() and queue.empty():
                        return
                    continue
                finished = item is _DONE
                batch = Newest()
                if not finished:
                    batch.add(item)
                    while not queue.empty() and len(batch.lines) < 500:
                        nxt = queue.get_nowait()
                        if nxt is _DONE:
                            finished = True
                            break
                        batch.add(nxt)
                if batch.lines:
                    await self._publish(stream, {"lines": list(batch.lines)})
                if finished:
                    return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _publish(self, subject: str, body: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await self.nc.publish(subject, wire.encode(body))
