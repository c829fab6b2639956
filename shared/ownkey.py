"""Reads of one KV key through the subjects that name that key, so nats-server can restrict them to it.

nats-py's ``KeyValue.watch`` creates its ordered consumer on ``$JS.API.CONSUMER.CREATE.<stream>`` with the
filter only in the request body, so the server's subject permissions can grant a watch of a whole bucket or
nothing. nats-server (2.10+) also takes ``$JS.API.CONSUMER.CREATE.<stream>.<consumer>.<filter subject>`` and
refuses a request whose body's filter differs from the one in the subject; and a direct get of the last
value of a key is ``$JS.API.DIRECT.GET.<stream>.<key's subject>`` (on a stream with ``allow_direct``). A
credential granted only those two subjects for ``$KV.<bucket>.<key>`` reads that key and no other: this is
how an agent reads its own assignment (``security_roles.own_key_reads``).

``OwnKeyWatch`` is a watch of one key on such a consumer: push, unacknowledged, in memory, delivering the
last value (or delete marker) first and then every change. It needs no consumer info or delete permission
(the server drops the consumer once its inbox is gone for ``inactive_threshold``). Whenever it cannot be sure
it saw every change (a gap in the consumer's sequence, heartbeats missing, a reconnect) it starts a new
consumer from the last value again: for a single key the latest value is the whole state, and the reader's
gate orders by revision.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.kv import KeyValue

_STATUS = "Status"
_KV_OP = "KV-Operation"
_MARKER = "Nats-Marker-Reason"  # nats-server 2.11+: expiry/removal markers


def stream_of(bucket: str) -> str:
    return f"KV_{bucket}"


def key_subject(bucket: str, key: str) -> str:
    return f"$KV.{bucket}.{key}"


def direct_get_subject(bucket: str, key: str) -> str:
    return f"$JS.API.DIRECT.GET.{stream_of(bucket)}.{key_subject(bucket, key)}"


def consumer_create_subject(bucket: str, key: str, consumer: str = "*") -> str:
    return f"$JS.API.CONSUMER.CREATE.{stream_of(bucket)}.{consumer}.{key_subject(bucket, key)}"


def own_key_reader(nc: NATS, bucket: str) -> KeyValue:
    """A ``KeyValue`` handle whose ``get(key)`` is a direct get by subject, opened without the stream info
    request (so it works with nothing but ``direct_get_subject`` granted)."""
    return KeyValue(name=bucket, stream=stream_of(bucket), pre=f"$KV.{bucket}.", js=nc.jetstream(), direct=True)


@dataclass(frozen=True)
class KeyUpdate:
    """One value of the key: ``value`` None when it was deleted or purged."""

    value: bytes | None
    revision: int


class OwnKeyWatch:
    def __init__(
        self, nc: NATS, bucket: str, key: str, *, idle_heartbeat: float = 2.0, inactive_threshold: float = 60.0,
        timeout: float = 5.0,
    ) -> None:
        """``idle_heartbeat``: the server's heartbeat interval while nothing changes; three missed (the consumer
        was lost with the server holding it) start a new consumer."""
        self.nc = nc
        self.bucket = bucket
        self.key = key
        self.idle_heartbeat = idle_heartbeat
        self.inactive_threshold = inactive_threshold
        self.timeout = timeout
        self.restarts = 0  # consumers started again after a gap, silence or reconnect
        self._queue: asyncio.Queue[KeyUpdate | None] = asyncio.Queue()
        self._sub: Subscription | None = None
        self._consumer_seq = 0
        self._last_heard = 0.0
        self._reconnects = 0
        self._need_restart = False
        self.consumer = ""  # the current consumer's name

    async def start(self) -> OwnKeyWatch:
        await self._open()
        return self

    async def _open(self) -> None:
        await self._close_sub()
        inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(inbox, cb=self._on_msg)
        self._consumer_seq = 0
        self._need_restart = False
        self._reconnects = int(self.nc.stats.get("reconnects", 0))
        # A fresh name every time: a consumer is never re-created with another config under an old name.
        name = self.consumer = f"{self.key}_{secrets.token_hex(6)}"
        config = ConsumerConfig(
            name=name, filter_subject=key_subject(self.bucket, self.key), deliver_subject=inbox,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT, ack_policy=AckPolicy.NONE, max_deliver=1,
            mem_storage=True, num_replicas=1, inactive_threshold=self.inactive_threshold,
            idle_heartbeat=self.idle_heartbeat, flow_control=True,
        )
        # With a name and a filter nats-py sends the filtered create subject (consumer_create_subject).
        await self.nc.jsm(timeout=self.timeout).add_consumer(stream_of(self.bucket), config=config)
        self._last_heard = time.monotonic()

    async def _on_msg(self, msg: Msg) -> None:
        self._last_heard = time.monotonic()
        headers = msg.headers or {}
        if headers.get(_STATUS) == "100":
            if msg.reply:  # flow control: answer, or the server stops delivering
                await self.nc.publish(msg.reply, b"")
            last = headers.get("Nats-Last-Consumer")
            if last is not None and last.isdigit() and int(last) != self._consumer_seq:
                self._gap()  # a heartbeat says more was delivered than arrived
            return
        if headers.get(_STATUS):
            return
        try:
            meta = msg.metadata
        except Exception:
            return  # not a JetStream delivery
        if meta.sequence.consumer != self._consumer_seq + 1:
            self._gap()
            return
        self._consumer_seq = meta.sequence.consumer
        deleted = headers.get(_KV_OP) in ("DEL", "PURGE") or headers.get(_MARKER) in ("MaxAge", "Purge", "Remove")
        self._queue.put_nowait(KeyUpdate(value=None if deleted else msg.data, revision=meta.sequence.stream))

    def _gap(self) -> None:
        self._need_restart = True
        self._queue.put_nowait(None)  # wake a waiting reader

    def _stale(self) -> bool:
        if self._need_restart:
            return True
        if int(self.nc.stats.get("reconnects", 0)) != self._reconnects:
            return True  # an in-memory R1 consumer may be gone with the server it lived on
        return time.monotonic() - self._last_heard > 3 * self.idle_heartbeat

    async def updates(self, timeout: float) -> KeyUpdate | None:
        """The next value of the key, or None when none came within ``timeout`` (or the consumer was just
        started again: the next update is the key's current value)."""
        if self._stale():
            self.restarts += 1
            await self._open()
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def _close_sub(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        while not self._queue.empty():
            self._queue.get_nowait()

    async def stop(self) -> None:
        await self._close_sub()


__all__ = [
    "KeyUpdate", "OwnKeyWatch", "consumer_create_subject", "direct_get_subject", "key_subject", "own_key_reader",
]
