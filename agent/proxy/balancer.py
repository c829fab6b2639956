"""Endpoint choice for the per-node proxy: round-robin and least-connections.

Pure: no I/O, no clock, no randomness. The two ``pick_*`` functions take everything they need
(the current backends, a cursor, the per-backend active counts, the keys to avoid) and return the
choice with the next cursor; the small classes below only keep that cursor (and, for
least-connections, the active counts) between calls.

Backends that just failed for the connection being placed are passed in ``exclude`` (by key) and
are never chosen again for it. Draining or unready containers are not the balancer's business:
the caller's ``resolve`` leaves them out of ``backends``, and since the list is read again for
every new connection (and every retry), a container leaves the rotation the moment it leaves
that list.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

ROUND_ROBIN: Final = "round-robin"
LEAST_CONNECTIONS: Final = "least-connections"
STRATEGIES: Final = (ROUND_ROBIN, LEAST_CONNECTIONS)


@dataclass(frozen=True, slots=True)
class Backend:
    """One ready endpoint: where to connect, and the container it belongs to (``key``)."""

    address: str
    port: int
    key: str  # container id: identifies the backend for least-connections accounting and exclusion


def pick_round_robin(
    backends: Sequence[Backend], cursor: int, exclude: Collection[str] = ()
) -> tuple[Backend | None, int]:
    """The backend at ``cursor`` (mod len), or the next one not in ``exclude``; and the next cursor.

    Successive calls with the returned cursor visit every backend in turn. ``None`` when every
    backend is excluded (or there are none); the cursor is then returned unchanged.
    """
    n = len(backends)
    if n == 0:
        return None, cursor
    start = cursor % n
    if not exclude:
        return backends[start], start + 1
    for step in range(n):
        i = (start + step) % n
        backend = backends[i]
        if backend.key not in exclude:
            return backend, i + 1
    return None, cursor


def pick_least_connections(
    backends: Sequence[Backend],
    active: Mapping[str, int],
    cursor: int,
    exclude: Collection[str] = (),
) -> tuple[Backend | None, int]:
    """The backend with the fewest active connections (``active[key]``, missing = 0), skipping
    ``exclude``; ties go to the first one at or after ``cursor`` so equal backends take turns.
    Returns the choice (``None`` if all are excluded) and the next cursor."""
    n = len(backends)
    if n == 0:
        return None, cursor
    start = cursor % n
    best: Backend | None = None
    best_i = start
    best_count = 0
    for step in range(n):
        i = (start + step) % n
        backend = backends[i]
        if backend.key in exclude:
            continue
        count = active.get(backend.key, 0)
        if best is None or count < best_count:
            best, best_i, best_count = backend, i, count
            if count == 0:
                break
    if best is None:
        return None, cursor
    return best, best_i + 1


class Balancer(Protocol):
    """What the proxy needs: a choice per attempt, and the attempt's start and end reported back.

    A retry (``exclude`` not empty) does not move the shared cursor: it takes the next backend
    after the one that failed, and the next connection still starts where it would have. (Were
    retries to move it, one dead backend in front of a live one would cost every connection a
    failed attempt.)"""

    def pick(self, backends: Sequence[Backend], exclude: Collection[str] = ()) -> Backend | None: ...

    def acquire(self, key: str) -> None: ...

    def release(self, key: str) -> None: ...


class RoundRobin:
    """Round-robin over whatever list it is given; successive picks visit every backend."""

    __slots__ = ("_cursor",)

    def __init__(self) -> None:
        self._cursor = 0

    def pick(self, backends: Sequence[Backend], exclude: Collection[str] = ()) -> Backend | None:
        backend, cursor = pick_round_robin(backends, self._cursor, exclude)
        if not exclude:
            self._cursor = cursor
        return backend

    def acquire(self, key: str) -> None:
        pass

    def release(self, key: str) -> None:
        pass


class LeastConnections:
    """Fewest active connections first (counted through ``acquire``/``release``), round-robin on ties."""

    __slots__ = ("_active", "_cursor")

    def __init__(self) -> None:
        self._cursor = 0
        self._active: dict[str, int] = {}

    @property
    def active(self) -> Mapping[str, int]:
        return self._active

    def pick(self, backends: Sequence[Backend], exclude: Collection[str] = ()) -> Backend | None:
        backend, cursor = pick_least_connections(backends, self._active, self._cursor, exclude)
        if not exclude:
            self._cursor = cursor
        return backend

    def acquire(self, key: str) -> None:
        self._active[key] = self._active.get(key, 0) + 1

    def release(self, key: str) -> None:
        left = self._active.get(key, 0) - 1
        if left > 0:
            self._active[key] = left
        else:
            self._active.pop(key, None)  # forget containers that are gone once their last connection ends


def make_balancer(strategy: str) -> Balancer:
    """A fresh balancer for ``strategy`` (one of ``STRATEGIES``); ``ValueError`` otherwise."""
    if strategy == ROUND_ROBIN:
        return RoundRobin()
    if strategy == LEAST_CONNECTIONS:
        return LeastConnections()
    raise ValueError(f"unknown proxy strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
