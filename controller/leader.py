"""Leader election: a lease key with a per-message TTL in the cluster's leader bucket.

The holder renews the lease by a compare-and-set publish (expected last subject sequence + a fresh TTL
header); when it stops renewing, the key expires and another controller creates it. Each acquisition
increments the ``term`` key; the leader stamps every assignment with its term, and agents ignore lower terms.

A leader acts only while it can prove its lease (``holds``: renewed within 3/4 of the TTL on a monotonic
clock), so one that was paused or cut off stops acting before another can take over. An undecodable lease or
term (``record-damaged``) is reported once and rewritten: the lease is removed by CAS and taken anew, the term
resumes above both what is readable and the highest term seen in any assignment (``term_floor``).

The controller runs its elector on a thread of its own (``leasekeeper.py``), so that renewals never wait
behind its work; ``may_renew`` lets it stop renewing (and acquiring) when it could not act anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from drover.shared.errors import WireError
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
        term_floor: Callable[[], int | Awaitable[int]] = lambda: 0,
        on_damaged: Callable[[str, str], None] = lambda key, error: None,
        clock: Callable[[], float] = time.monotonic,
        may_renew: Callable[[], bool] = lambda: True,
    ):
        self.js, self.kv, self.bucket, self.id = js, kv, bucket, my_id
        self.ttl = max(1, int(ttl))
        self.state = LeaderState()
        self._rev = 0
        self._on_change = on_change
        self._term_floor = term_floor
        self._on_damaged = on_damaged
        self._damaged_seen: set[tuple[str, int]] = set()
        self._clock = clock
        self._renewed = 0.0
        self._may_renew = may_renew  # False: neither renew nor acquire (the controller could not act)

    def holds(self) -> bool:
        """The lease is proven held: renewed recently enough that it cannot have expired and been taken."""
        return self.state.is_leader and self._clock() - self._renewed < self.ttl * 0.75

    def step_down(self, why: str) -> None:
        """Stop acting as leader (e.g. an assignment carries a higher term: another leader exists)."""
        if self.state.is_leader:
            log.warning("stepping down", controller=self.id, reason=why)
            self._set(LeaderState())

    def _damaged(self, key: str, rev: int, error: str) -> None:
        if (key, rev) not in self._damaged_seen:
            self._damaged_seen.add((key, rev))
            self._on_damaged(key, error)

    def _set(self, state: LeaderState) -> None:
        was = self.state.is_leader
        self.state = state
        if was != state.is_leader:
            log.info("leadership changed", controller=self.id, leader=state.is_leader, term=state.term)
            if self._on_change is not None:
                self._on_change(state)

    async def run(self) -> None:
        interval = self.ttl / 4
        while True:
            try:
                if not self._may_renew():
                    if self.state.is_leader and not self.holds():
                        self._set(LeaderState())  # the lease lapses: another controller takes over
                elif self.state.is_leader:
                    await self._renew()
                else:
                    await self._try_acquire()
            except Exception as exc:
                # NATS away or the stream briefly without a leader: a leader that cannot renew within its TTL
                # must assume it lost the lease.
                log.warning("lease step failed", controller=self.id, error=str(exc) or type(exc).__name__)
                if self.state.is_leader and not self.holds():
                    self._set(LeaderState())
            await asyncio.sleep(interval)

    async def _read_term(self) -> tuple[int, int | None]:
        """The stored term and its revision; an undecodable term is reported and read as 0 (the floor of
        assignment terms then decides)."""
        try:
            t = await self.kv.get(TERM_KEY)
        except KeyNotFoundError:
            return 0, None
        try:
            term = int((t.value or b"0").decode("ascii").strip())
            if term < 0:
                raise ValueError(f"negative term {term}")
        except (ValueError, UnicodeDecodeError) as exc:
            self._damaged(TERM_KEY, t.revision or 0, f"term is not a number: {exc}")
            term = 0
        return term, t.revision

    async def _clear_damaged_lease(self) -> None:
        """A lease that does not decode can never expire into a usable one (a plain put has no TTL): report it
        and remove exactly that revision, so that an election can take place."""
        try:
            e = await self.kv.get(LEASE_KEY)
        except KeyNotFoundError:
            return
        if not e.value:
            return
        try:
            Lease.from_wire(e.value)
            return
        except WireError as exc:
            self._damaged(LEASE_KEY, e.revision or 0, str(exc))
        with contextlib.suppress(KeyWrongLastSequenceError):
            await self.kv.delete(LEASE_KEY, last=e.revision)

    async def _try_acquire(self) -> None:
        term, term_rev = await self._read_term()
        floor = self._term_floor()
        if inspect.isawaitable(floor):
            floor = await floor
        term = max(term, floor)  # terms resume above any term an assignment carries
        now = time.time()
        lease = Lease(id=self.id, term=term + 1, since=now)
        try:
            rev = await self.kv.create(LEASE_KEY, lease.to_wire(), msg_ttl=self.ttl)
        except KeyWrongLastSequenceError:
            await self._clear_damaged_lease()
            return  # someone holds it
        except Exception as exc:
            if "wrong last sequence" in str(exc).lower():
                await self._clear_damaged_lease()
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
        self._renewed = self._clock()
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
        self._renewed = self._clock()

    async def resign(self) -> None:
        if self.state.is_leader:
            with contextlib.suppress(Exception):
                await self.kv.delete(LEASE_KEY, last=self._rev)
        self._set(LeaderState())
