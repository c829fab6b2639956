"""Replies to write requests, remembered by request id where every controller sees them.

The API is a NATS queue group: a client whose request got no reply (its controller is paused, starved or
gone) sends it again and another controller may get it. So that the retry is answered, not done twice —
and prints what the first attempt did (``created``, not ``unchanged``) — the controller that takes a
request id claims it in the shared ``drover_<cluster>_requests`` bucket (create: only one can), does the
write, and stores its reply there; a controller that gets the same id later sends the stored reply. The
bucket's TTL forgets ids after a while. An in-memory cache would not do: the retry usually reaches the
*other* controller.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from drover.shared import idempotency
from drover.shared.bus import JS_TRANSIENT, JS_WRITE_DEADLINE
from drover.shared.models import ApiReply
from drover.shared.retry import retrying

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

TTL = 600.0  # well beyond any client's overall timeout (60 s at most)
WAIT = 2.0  # how long a retry waits for the claimant's reply before it leaves the client to retry again
# A claim older than this was made by a controller that died or stalled mid-write: another may take it
# over. Long enough that a slow but live write (a 1 MiB apply) is not done twice.
TAKEOVER_AFTER = 10.0
POLL = 0.05

_PENDING = b"pending "  # + the claim's wall-clock time (controllers compare it: not monotonic)
_DONE = b"done "  # + the reply's wire bytes


class Busy(Exception):
    """Another controller is doing this request right now: send no reply, the client will retry."""


class RequestLog:
    def __init__(self, kv: KeyValue, clock: Callable[[], float] = time.time, wait: float = WAIT) -> None:
        self.kv = kv
        self.clock = clock
        self.wait = wait

    async def answer(self, verb: str, body: dict[str, object], compute: Callable[[], Awaitable[bytes]]) -> bytes | None:
        """The reply to send: ``compute()``'s, or the stored one for a request id already answered; None
        when another controller is still doing it (no reply: the client retries)."""
        try:
            rid = idempotency.request_id_of(verb, body)
        except ValueError as exc:
            problems = [{"where": idempotency.KEY, "message": str(exc)}]
            return ApiReply(ok=False, code="invalid", error=f"{idempotency.KEY}: {exc}", problems=problems).to_wire()
        if rid is None:
            return await compute()
        try:
            # A claim is a compare-and-set: repeatable while the bucket's stream elects a leader
            stored = await retrying(lambda: self.claim(rid), retry_on=JS_TRANSIENT, deadline=JS_WRITE_DEADLINE)
        except Busy:
            return None
        if stored is not None:
            return stored
        reply = await compute()
        try:
            await self.kv.put(rid, _DONE + reply)
        except Exception:  # the bus failed: the write is done, so answer it anyway; a retry after
            pass  # TAKEOVER_AFTER is then done again (compare-and-set writes: at worst 'unchanged')
        return reply

    async def claim(self, rid: str) -> bytes | None:
        """None: this controller now owns ``rid`` (do it, then store the reply); bytes: the reply already
        given to it. Raises ``Busy`` while another live controller is doing it."""
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait  # a local wait: monotonic; claims carry wall-clock times
        while True:
            now = self.clock()
            try:
                await self.kv.create(rid, _PENDING + repr(now).encode())
                return None
            except KeyWrongLastSequenceError:
                pass
            try:
                entry = await self.kv.get(rid)
            except KeyNotFoundError:  # expired or deleted between the two calls: claim again
                continue
            value = entry.value or b""
            if value.startswith(_DONE):
                return value[len(_DONE):]
            if now - _claimed_at(value) >= TAKEOVER_AFTER:
                try:  # compare-and-set: of several controllers taking over, one wins
                    await self.kv.update(rid, _PENDING + repr(now).encode(), last=entry.revision)
                    return None
                except KeyWrongLastSequenceError:
                    continue
            if loop.time() >= deadline:
                raise Busy(rid)
            await asyncio.sleep(POLL)


def _claimed_at(value: bytes) -> float:
    try:
        return float(value[len(_PENDING):])
    except ValueError:  # not ours (written by something else): treat as abandoned
        return 0.0


__all__ = ["TTL", "Busy", "RequestLog"]
