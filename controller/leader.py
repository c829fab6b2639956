"""Leader election: a lease key with a per-message TTL in the cluster's leader bucket.

The holder renews the lease by a compare-and-set publish (expected last subject sequence + a fresh TTL
header); when it stops renewing, the key expires and another controller creates it. Each acquisition
increments the ``term`` key; the leader stamps every assignment with its term, and agents ignore lower terms.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from drover.shared.models import Record

log = structlog.get_logger("drover.leader")

LEASE_KEY = "lease"
TERM_KEY = "term"


class Lease(Record):
    id: str
    term: int
    since: float


@dataclass
class LeaderState:
    is_leader: bool = False
    term: int = 0
    since: float = 0.0


async def open_leader_bucket(js: JetStreamContext, bucket: str, replicas: int = 1) -> KeyValue:
    try:
        return await js.key_value(bucket)
    except (BucketNotFoundError, NotFoundError):
        pass
    try:
        return await js.create_key_value(
            KeyValueConfig(bucket=bucket, history=1, storage=StorageType.FILE, replicas=replicas)
        )
    except Exception:
        return await js.key_value(bucket)


async def read_lease(kv: KeyValue) -> Lease | None:
    try:
        e = await kv.get(LEASE_KEY)
    except KeyNotFoundError:
        return None
    if not e.value:
        return None
    return Lease.from_wire(e.value)


class Elector:
    def __init__(
        self,
        js: JetStreamContext,
        kv: KeyValue,
        bucket: str,
        my_id: str,
        *,
        ttl: int = 2,
        on_change: Callable[[LeaderState], None] | None = None,
    ):
        self.js, self.kv, self.bucket, self.id = js, kv, bucket, my_id
        self.ttl = max(1, int(ttl))
        self.state = LeaderState()
        self._rev = 0
        self._on_change = on_change
        self.changed = asyncio.Event()

    def _set(self, state: LeaderState) -> None:
        was = self.state.is_leader
        self.state = state
        if was != state.is_leader:
            log.info("leadership changed", controller=self.id, leader=state.is_leader, term=state.term)
            if self._on_change is not None:
                self._on_change(state)
            self.changed.set()

    async def run(self) -> None:
        interval = self.ttl / 4
        while True:
            try:
                if self.state.is_leader:
                    await self._renew()
                else:
                    await self._try_acquire()
            except Exception as exc:
                # NATS away or the stream briefly without a leader: a leader that cannot renew within its TTL
                # must assume it lost the lease.
                log.warning("lease step failed", controller=self.id, error=str(exc) or type(exc).__name__)
                if self.state.is_leader and time.time() - self._renewed > self.ttl * 0.75:
                    self._set(LeaderState())
            await asyncio.sleep(interval)

    _renewed: float = 0.0

    async def _try_acquire(self) -> None:
        try:
            t = await self.kv.get(TERM_KEY)
            term = int(t.value or b"0")
            term_rev: int | None = t.revision
        except KeyNotFoundError:
            term, term_rev = 0, None
        now = time.time()
        lease = Lease(id=self.id, term=term + 1, since=now)
        try:
            rev = await self.kv.create(LEASE_KEY, lease.to_wire(), msg_ttl=self.ttl)
        except KeyWrongLastSequenceError:
            return  # someone holds it
        except Exception as exc:
            if "wrong last sequence" in str(exc).lower():
                return
            raise
        # We hold the lease: record the new term (only a lease holder writes it).
        try:
            if term_rev is None:
                await self.kv.create(TERM_KEY, str(term + 1).encode())
            else:
                await self.kv.update(TERM_KEY, str(term + 1).encode(), last=term_rev)
        except Exception:
            # Another holder's term write raced ours: give the lease up rather than run with a doubtful term.
            with contextlib.suppress(Exception):
                await self.kv.delete(LEASE_KEY, last=rev)
            return
        self._rev = rev
        self._renewed = time.time()
        self._set(LeaderState(is_leader=True, term=term + 1, since=now))

    async def _renew(self) -> None:
        lease = Lease(id=self.id, term=self.state.term, since=self.state.since)
        headers = {"Nats-Expected-Last-Subject-Sequence": str(self._rev), "Nats-TTL": f"{self.ttl}s"}
        try:
            ack = await self.js.publish(f"$KV.{self.bucket}.{LEASE_KEY}", lease.to_wire(), headers=headers)
        except Exception as exc:
            if "wrong last sequence" in str(exc).lower():
                self._set(LeaderState())
                return
            raise
        self._rev = ack.seq
        self._renewed = time.time()

    async def resign(self) -> None:
        if self.state.is_leader:
            with contextlib.suppress(Exception):
                await self.kv.delete(LEASE_KEY, last=self._rev)
        self._set(LeaderState())
