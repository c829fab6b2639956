"""Pure gossip state: member records, endpoint entries, and the rules that merge them.

Nothing here does I/O, reads a clock or draws random numbers; the caller passes ``now`` where time
matters. The state is a join semilattice, so merging the same updates in any order (and any number of
times) ends in the same table:

* A member record is ordered by ``(epoch, incarnation, status rank, address, port, meta)`` with the
  ranks ``alive < suspect < dead < left``: at one incarnation a suspicion beats "alive", a death beats
  a suspicion, a graceful leave beats a death; a higher incarnation (a refutation) beats them all, and
  a later epoch (a restart: epoch and incarnation start from the wall clock) beats any earlier life.
* An endpoint entry belongs to an origin node and a key ``(container, port)`` and is ordered by its
  version ``(epoch, counter)``: ``epoch`` is the origin's start incarnation, ``counter`` a Lamport
  counter bumped on every change of the origin's endpoints. Removal is a tombstone (``present=False``)
  with a newer version, so a stale "present" never wins.
* Per origin the highest epoch ever seen is kept as a floor; entries below it (an earlier life of a
  restarted node) are dropped, so a restart wipes the endpoints of the previous life.

Visible endpoints are the present entries of members that are alive or suspect.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum


class Status(StrEnum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


RANK: dict[Status, int] = {Status.ALIVE: 0, Status.SUSPECT: 1, Status.DEAD: 2, Status.LEFT: 3}
BY_RANK: dict[int, Status] = {v: k for k, v in RANK.items()}
UP: frozenset[Status] = frozenset({Status.ALIVE, Status.SUSPECT})


@dataclass(frozen=True)
class Endpoint:
    service: str
    address: str
    port: int
    node: str
    container: str
    revision: int
    ready: bool


@dataclass(frozen=True)
class Member:
    name: str
    address: str
    port: int
    incarnation: int
    status: Status
    epoch: int = 0
    meta: tuple[tuple[str, str], ...] = field(default=())

    def key(self) -> tuple[int, int, int, str, int, tuple[tuple[str, str], ...]]:
        return (self.epoch, self.incarnation, RANK[self.status], self.address, self.port, self.meta)

    def meta_dict(self) -> dict[str, str]:
        return dict(self.meta)


EntryKey = tuple[str, str, int]  # (origin, container, port)


@dataclass(frozen=True)
class EndpointEntry:
    """One endpoint as its origin last announced it; ``present=False`` is a tombstone."""

    endpoint: Endpoint
    epoch: int
    counter: int
    present: bool = True

    @property
    def origin(self) -> str:
        return self.endpoint.node

    def key(self) -> EntryKey:
        return (self.endpoint.node, self.endpoint.container, self.endpoint.port)

    def version(self) -> tuple[int, int]:
        return (self.epoch, self.counter)

    def order(self) -> tuple[int, int, bool, str, str, int, bool]:
        e = self.endpoint
        return (self.epoch, self.counter, self.present, e.service, e.address, e.revision, e.ready)


Update = Member | EndpointEntry


# Incarnations and epochs start from the wall clock in ms and grow by one per refutation: one far ahead of
# the clock is forged (or from a host whose clock is off by more than this), and would outrank every real
# record of that node until the clock caught up.
FUTURE_SLACK_MS = 3_600_000


def plausible(u: Update, now_ms: int, slack_ms: int = FUTURE_SLACK_MS) -> bool:
    """Whether an update's incarnation and epoch are no further ahead of the wall clock than ``slack_ms``."""
    limit = now_ms + slack_ms
    if isinstance(u, Member):
        return u.incarnation <= limit and u.epoch <= limit
    return u.epoch <= limit


def update_key(u: Update) -> tuple[str, ...] | tuple[str, str, str, int]:
    if isinstance(u, Member):
        return ("m", u.name)
    return ("e", *u.key())


class ClusterState:
    """Members and endpoint entries as this node knows them; merges are pure and order-independent."""

    def __init__(self) -> None:
        self.members: dict[str, Member] = {}
        self.entries: dict[EntryKey, EndpointEntry] = {}
        self.floors: dict[str, int] = {}  # origin -> highest epoch seen

    # ------------------------------------------------------------------ merging
    def merge(self, update: Update) -> bool:
        """Fold one update in; True when it changed the state (the caller then re-gossips it)."""
        if isinstance(update, Member):
            return self.merge_member(update)
        return self.merge_entry(update)

    def newer(self, u: Update) -> bool:
        """Whether merging ``u`` would change the state (without changing it)."""
        if isinstance(u, Member):
            cur = self.members.get(u.name)
            return cur is None or u.key() > cur.key()
        if u.epoch < self.floors.get(u.origin, u.epoch):
            return False
        e = self.entries.get(u.key())
        return e is None or u.order() > e.order()

    def merge_all(self, updates: Iterable[Update]) -> list[Update]:
        return [u for u in updates if self.merge(u)]

    def merge_member(self, m: Member) -> bool:
        cur = self.members.get(m.name)
        if cur is not None and m.key() <= cur.key():
            return False
        self.members[m.name] = m
        self._raise_floor(m.name, m.epoch)
        return True

    def merge_entry(self, e: EndpointEntry) -> bool:
        origin = e.origin
        if e.epoch < self.floors.get(origin, e.epoch):
            return False
        cur = self.entries.get(e.key())
        if cur is not None and e.order() <= cur.order():
            return False
        self.entries[e.key()] = e
        self._raise_floor(origin, e.epoch)
        return True

    def _raise_floor(self, origin: str, epoch: int) -> None:
        if epoch <= self.floors.get(origin, epoch - 1):
            return
        self.floors[origin] = epoch
        stale = [k for k, e in self.entries.items() if k[0] == origin and e.epoch < epoch]
        for k in stale:
            del self.entries[k]

    # ------------------------------------------------------------------ forgetting (time-based, by the caller)
    def forget_member(self, name: str) -> None:
        """Drop a long-dead member and its entries (the epoch floor stays, so stale entries cannot return)."""
        self.members.pop(name, None)
        for k in [k for k in self.entries if k[0] == name]:
            del self.entries[k]

    def forget_entry(self, key: EntryKey) -> None:
        self.entries.pop(key, None)

    # ------------------------------------------------------------------ views
    def up(self, name: str) -> bool:
        m = self.members.get(name)
        return m is not None and m.status in UP

    def endpoints(self, service: str | None = None, *, ready_only: bool = True) -> list[Endpoint]:
        out = [
            e.endpoint
            for e in self.entries.values()
            if e.present
            and (service is None or e.endpoint.service == service)
            and (e.endpoint.ready or not ready_only)
            and self.up(e.origin)
        ]
        out.sort(key=lambda ep: (ep.service, ep.node, ep.container, ep.port))
        return out

    def snapshot(self) -> list[Update]:
        """Every record, for a full-state exchange."""
        return [*self.members.values(), *self.entries.values()]


# ---------------------------------------------------------------------- SWIM rules
def suspect(m: Member) -> Member:
    """This node failed to reach ``m``: suspect it at its current incarnation."""
    return replace(m, status=Status.SUSPECT)


def declare_dead(m: Member) -> Member:
    return replace(m, status=Status.DEAD)


def suspicion_expired(since: float, now: float, timeout: float) -> bool:
    return now - since >= timeout


def expired_suspects(
    members: Mapping[str, Member], suspected: Mapping[str, tuple[int, float]], now: float, timeout: float
) -> list[Member]:
    """Members still suspect at the incarnation they were suspected at, for ``timeout`` or longer."""
    out: list[Member] = []
    for name, (inc, since) in suspected.items():
        m = members.get(name)
        if m is None or m.status is not Status.SUSPECT or m.incarnation != inc:
            continue
        if suspicion_expired(since, now, timeout):
            out.append(declare_dead(m))
    return out


def scaled_suspicion_timeout(base: float, n: int, *, scale: bool) -> float:
    """``base``, or ``base`` times log10 of the cluster size (at least 1) when ``scale`` is set."""
    if not scale:
        return base
    return base * max(1.0, math.log10(max(n, 1)))


def retransmit_limit(mult: int, n: int) -> int:
    """How many times an update is re-sent: ``mult * ceil(log10(n + 1))`` (memberlist's rule), ≥ 1."""
    return max(1, mult * math.ceil(math.log10(n + 1)))


def refute(local: Member, incoming: Member) -> Member | None:
    """What this node says about itself after hearing ``incoming`` about itself, or None to stay put.

    Any claim that differs from the local record and is not older than it (a suspicion, a death, a
    leave, or an alive record of an earlier life with a larger incarnation) is overridden by an alive
    record with a higher incarnation. A claim from a later epoch (an earlier life that ran with a clock
    ahead of ours) also moves the epoch forward, so our endpoints outrank the old ones.
    """
    if incoming == local or incoming.key() < local.key():
        return None
    if local.status is Status.LEFT:
        return None
    inc = max(local.incarnation, incoming.incarnation) + 1
    epoch = local.epoch if incoming.epoch <= local.epoch else inc
    return replace(local, incarnation=inc, status=Status.ALIVE, epoch=epoch)
