"""The agent's ``logs`` request/reply API (docs/BUS.md).

Request ``{"container": replica id or name, "tail": int|None, "follow": bool, "stream": subject}``.
Reply ``{"ok": true, "lines": [...]}`` (or ``{"ok": false, "error": ...}``). With ``follow`` the reply carries
what the container has logged so far (its last ``tail`` lines) and later lines are published as
``{"lines": [...]}`` to ``stream`` while the client keeps sending ``{"alive": true}`` to ``<stream>.alive``
(at least every 5 s); then ``{"eof": true}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import structlog

from drover.agent.drivers.base import Observed
from drover.shared import wire
from drover.shared.errors import WireError

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from drover.agent.main import Agent

log = structlog.get_logger("drover.agent.logs")

MAX_REPLY = 900_000  # NATS' default max payload is 1 MiB
ALIVE_TIMEOUT = 5.0
QUIET = 0.2  # the reply's backlog is what arrives before this much silence …
BACKLOG_WAIT = 0.5  # … or this long, or the ``tail`` lines; later lines go to the stream
_DONE = object()


def _fit(lines: list[str], limit: int = MAX_REPLY) -> list[str]:
    """The last lines whose total size fits ``limit``."""
    total = 0
    out: list[str] = []
    for line in reversed(lines):
        total += len(line) + 8
        if total > limit:
            break
        out.append(line)
    out.reverse()
    return out


class LogsApi:
    def __init__(self, agent: Agent):
        self.agent = agent
        self._sub: Any = None
        self._streams: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        nc = self.agent.nc
        assert nc is not None
        self._sub = await nc.subscribe(self.agent.names.agent_api(self.agent.node, "logs"), cb=self._on_request)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _on_request(self, msg: Msg) -> None:
        sup = self.agent.sup
        if sup is not None:
            sup.spawn("logs-request", self._handle(msg))

    def _find(self, key: str) -> Observed | None:
        found = [o for o in self.agent.observed if key in (o.id, o.name, o.container_id)]
        if not found and len(key) >= 6:
            found = [o for o in self.agent.observed if o.container_id.startswith(key)]
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
        tail = req.get("tail")
        tail = tail if isinstance(tail, int) and not isinstance(tail, bool) and tail >= 0 else None
        follow = bool(req.get("follow"))
        stream = req.get("stream")
        obs = self._find(key)
        if obs is None:
            await self._reply(msg, {"ok": False, "error": f"container {key!r} not found on node {self.agent.node}"})
            return
        driver = self.agent.driver
        if not follow or not isinstance(stream, str) or not stream:
            try:
                lines = [line async for line in driver.logs(obs.container_id, tail, False)]
            except Exception as exc:
                await self._reply(msg, {"ok": False, "error": f"logs of {key}: {exc}"})
                return
            await self._reply(msg, {"ok": True, "lines": _fit(lines)})
            return
        await self._follow(msg, obs, tail, stream)

    async def _follow(self, msg: Msg, obs: Observed, tail: int | None, stream: str) -> None:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        driver = self.agent.driver

        async def pump() -> None:
            try:
                async for line in driver.logs(obs.container_id, tail, True):
                    await queue.put(line)
            finally:
                await queue.put(_DONE)

        pump_task = asyncio.get_running_loop().create_task(pump(), name=f"logs-pump:{obs.id}")
        done = False
        try:
            backlog: list[str] = []
            deadline = time.monotonic() + BACKLOG_WAIT
            while tail is None or len(backlog) < tail:
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
                backlog.append(item)
            await self._reply(msg, {"ok": True, "lines": _fit(backlog)})
            if not done:
                await self._stream(queue, stream)
        finally:
            pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump_task
            await self._publish(stream, {"eof": True})

    async def _stream(self, queue: asyncio.Queue[Any], stream: str) -> None:
        nc = self.agent.nc
        assert nc is not None
        last_alive = time.monotonic()

        async def alive(_: Msg) -> None:
            nonlocal last_alive
            last_alive = time.monotonic()

        sub = await nc.subscribe(f"{stream}.alive", cb=alive)
        try:
            while time.monotonic() - last_alive < ALIVE_TIMEOUT:
                batch: list[str] = []
                try:
                    item = await asyncio.wait_for(queue.get(), 0.5)
                except TimeoutError:
                    continue
                finished = item is _DONE
                if not finished:
                    batch.append(item)
                    while not queue.empty() and len(batch) < 500:
                        nxt = queue.get_nowait()
                        if nxt is _DONE:
                            finished = True
                            break
                        batch.append(nxt)
                if batch:
                    await self._publish(stream, {"lines": _fit(batch)})
                if finished:
                    return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _publish(self, subject: str, body: dict[str, Any]) -> None:
        nc = self.agent.nc
        if nc is None:
            return
        with contextlib.suppress(Exception):
            await nc.publish(subject, wire.encode(body))
