"""Per-service replica counts kept up to date as assignments and reported statuses change.

``get services`` shows, for every service, how many of its replicas run, are ready and are on the current
revision. Walking every replica for that costs a pass over the whole cluster on the event loop (100,000
replicas: most of a second per request). Instead, ``ClusterState`` marks a node whenever its assignment or
its reported statuses change, and ``StatusTally`` recounts the marked nodes (O(replicas on the node), once per
node between two reads) and keeps the sums per service. The counts are those of a node that is alive; a
node's liveness changes with the clock alone, so the replicas of lost nodes are taken out when a view is
built (``ServiceCounts.of``: O(services on lost nodes)), never stored.

The reference is the walk itself (``views.service_rows`` without a tally): ``tests/unit/controller/
test_tally.py`` checks on generated histories that both give the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from drover.shared.models import AssignedContainer, ContainerState, ContainerStatus


@dataclass
class Counts:
    """Replicas of one service (on one node, or in all): assigned, by revision, and as reported."""

    total: int = 0
    running: int = 0
    ready: int = 0  # reported ready on the revision it was assigned
    crashing: int = 0  # reported crash-looping (or lost)
    revisions: dict[int, int] = field(default_factory=dict)  # revision -> replicas assigned on it

    def add(self, other: Counts, sign: int = 1) -> None:
        self.total += sign * other.total
        self.running += sign * other.running
        self.ready += sign * other.ready
        self.crashing += sign * other.crashing
        for rev, n in other.revisions.items():
            left = self.revisions.get(rev, 0) + sign * n
            if left:
                self.revisions[rev] = left
            else:
                self.revisions.pop(rev, None)


def node_counts(containers: Sequence[AssignedContainer], observed: Mapping[str, ContainerStatus]) -> dict[str, Counts]:
    """One node's replicas counted per service, as if the node were alive."""
    out: dict[str, Counts] = {}
    for c in containers:
        k = out.get(c.service)
        if k is None:
            k = out[c.service] = Counts()
        k.total += 1
        k.revisions[c.revision] = k.revisions.get(c.revision, 0) + 1
        obs = observed.get(c.id)
        if obs is None:
            continue
        if obs.state == ContainerState.RUNNING:
            k.running += 1
        elif obs.state in (ContainerState.CRASH_LOOP, ContainerState.LOST):
            k.crashing += 1
        if obs.ready and obs.revision == c.revision:
            k.ready += 1
    return out


class StatusTally:
    """Every node's counts and their sums per service (kept on the event loop, read by the views).

    A change only marks its node (``mark``: a heartbeat costs a set insert); the marked nodes are recounted
    when counts are next read (``lookup`` gives a node's assignment and reported statuses as they are then).
    So a node that changed many times between two reads is counted once, and nothing is counted while nobody
    reads."""

    def __init__(
        self, lookup: Callable[[str], tuple[Sequence[AssignedContainer], Mapping[str, ContainerStatus]]] | None = None
    ) -> None:
        self._lookup = lookup
        self._stale: set[str] = set()
        self._by_node: dict[str, dict[str, Counts]] = {}
        self._by_service: dict[str, Counts] = {}

    def mark(self, node: str) -> None:
        """The node's assignment or its reported statuses changed (counted again at the next read)."""
        self._stale.add(node)

    @property
    def by_node(self) -> dict[str, dict[str, Counts]]:
        self._settle()
        return self._by_node

    @property
    def by_service(self) -> dict[str, Counts]:
        self._settle()
        return self._by_service

    def _settle(self) -> None:
        if self._stale and self._lookup is not None:
            stale, self._stale = self._stale, set()
            for node in stale:
                self.recount(node, *self._lookup(node))

    def recount(
        self, node: str, containers: Sequence[AssignedContainer], observed: Mapping[str, ContainerStatus]
    ) -> None:
        """Count the node's replicas again, from ``containers`` and ``observed``."""
        for service, k in self._by_node.pop(node, {}).items():
            total = self._by_service[service]
            total.add(k, -1)
            if not total.total:
                del self._by_service[service]
        new = node_counts(containers, observed)
        if not new:
            return
        self._by_node[node] = new
        for service, k in new.items():
            self._by_service.setdefault(service, Counts()).add(k)

    def lost_counts(self, lost: Iterable[str]) -> dict[str, Counts]:
        """The counts of the replicas on ``lost`` nodes, per service (what a view takes out)."""
        out: dict[str, Counts] = {}
        by_node = self.by_node
        for node in lost:
            for service, k in by_node.get(node, {}).items():
                out.setdefault(service, Counts()).add(k)
        return out


@dataclass(frozen=True)
class ServiceCounts:
    """What a service's row and status need of its replicas."""

    total: int = 0
    current: int = 0  # on the service's revision
    running: int = 0
    ready: int = 0
    crashing: bool = False  # a replica crash-looping or on a lost node

    @staticmethod
    def of(alive: Counts | None, lost: Counts | None, revision: int) -> ServiceCounts:
        """From a service's counts as if every node were alive, less those of its replicas on lost nodes (which
        are assigned and count as such, but neither run nor are ready: they are lost)."""
        a = alive or Counts()
        gone = lost or Counts()
        return ServiceCounts(
            total=a.total,
            current=a.revisions.get(revision, 0),
            running=a.running - gone.running,
            ready=a.ready - gone.ready,
            crashing=gone.total > 0 or a.crashing - gone.crashing > 0,
        )
