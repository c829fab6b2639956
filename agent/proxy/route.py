"""What every connection of one service's proxy shares (``Route``): where backends come from, how one is
chosen, the counters (``ProxyStats``), the open connections with their cap and idle sweep, and the connect
attempts under way with their deadlines (one timer per route, not one per connection)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from drover.agent.proxy.balancer import Backend, Balancer

if TYPE_CHECKING:
    from drover.agent.proxy.relay import ClientSide, UpstreamSide

log = structlog.get_logger("drover.agent.proxy")

# Hardening: a flood of connections (or of idle ones held open) must not exhaust the agent's descriptors.
MAX_CLIENTS = 4096  # open client connections per service proxy; more are closed at once
IDLE_TIMEOUT = 300.0  # seconds without a byte either way before a connection is closed


@dataclass(slots=True)
class ProxyStats:
    """Counters of one service's proxy (plain ints: read them, never write them)."""

    connections: int = 0  # client connections accepted
    active: int = 0  # client connections open now
    failed_attempts: int = 0  # backend attempts that failed: refused, timed out, reset/closed before answering
    retries: int = 0  # attempts after a connection's first one
    no_backend: int = 0  # clients closed because no (further) backend was available or attempts ran out
    refused: int = 0  # clients closed at once: the proxy already had MAX_CLIENTS open
    idle_closed: int = 0  # connections closed after IDLE_TIMEOUT without traffic

    def as_dict(self) -> dict[str, int]:
        return {
            "connections": self.connections,
            "active": self.active,
            "failed_attempts": self.failed_attempts,
            "retries": self.retries,
            "no_backend": self.no_backend,
            "refused": self.refused,
            "idle_closed": self.idle_closed,
        }


class Route:
    """What every connection of one service shares: where backends come from, how one is chosen,
    the counters, the open connections, and the connect attempts under way (with deadlines)."""

    __slots__ = (
        "_idle_handle", "_sweep_handle", "backend_wait", "balancer", "clients", "connect_timeout", "connecting",
        "idle_timeout", "log",
        "loop", "max_attempts", "max_clients", "resolve", "service", "stats",
    )

    def __init__(
        self,
        service: str,
        resolve: Callable[[], Sequence[Backend]],
        balancer: Balancer,
        *,
        connect_timeout: float,
        max_attempts: int,
        loop: asyncio.AbstractEventLoop,
        max_clients: int = MAX_CLIENTS,
        idle_timeout: float = IDLE_TIMEOUT,
        backend_wait: float = 0.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.backend_wait = backend_wait  # how long a connection may wait for a (further) ready backend
        self.service = service
        self.resolve = resolve
        self.balancer = balancer
        self.connect_timeout = connect_timeout
        self.max_attempts = max_attempts
        self.loop = loop
        self.stats = ProxyStats()
        self.clients: set[ClientSide] = set()
        # Attempts still connecting -> deadline. Insertion order is deadline order (one timeout per
        # route), so one timer for the oldest replaces a timer per connection.
        self.connecting: dict[UpstreamSide, float] = {}
        self._sweep_handle: asyncio.TimerHandle | None = None
        self.max_clients = max_clients
        self.idle_timeout = idle_timeout
        self._idle_handle: asyncio.TimerHandle | None = None
        self.log = log.bind(service=service)

    def admit(self, client: ClientSide) -> bool:
        """Count a new client in, unless the cap is reached; starts the idle sweep with the first one."""
        if len(self.clients) >= self.max_clients:
            self.stats.refused += 1
            return False
        self.clients.add(client)
        if self._idle_handle is None:
            self._idle_handle = self.loop.call_later(self.idle_timeout / 2, self._idle_sweep)
        return True

    def _idle_sweep(self) -> None:
        """Every half timeout: a connection with no traffic in two sweeps in a row (≥ the timeout) is closed.
        A flag per connection (set on every read) keeps the data path free of clock reads."""
        self._idle_handle = None
        for client in list(self.clients):
            if client.busy:
                client.busy = False
                client.idle = 0
                continue
            client.idle += 1
            if client.idle >= 2:
                self.stats.idle_closed += 1
                client.abort()
        if self.clients:
            self._idle_handle = self.loop.call_later(self.idle_timeout / 2, self._idle_sweep)

    def start_connect(self, up: UpstreamSide) -> None:
        deadline = self.loop.time() + self.connect_timeout
        self.connecting[up] = deadline
        if self._sweep_handle is None:
            self._sweep_handle = self.loop.call_at(deadline, self._sweep)
        up.step()

    def _sweep(self) -> None:
        self._sweep_handle = None
        now = self.loop.time()
        expired: list[UpstreamSide] = []
        next_deadline = None
        for up, deadline in self.connecting.items():
            if deadline > now:
                next_deadline = deadline
                break
            expired.append(up)
        for up in expired:
            self.connecting.pop(up, None)
            up.cancel_connect(timed_out=True)
        if next_deadline is not None and self._sweep_handle is None:
            self._sweep_handle = self.loop.call_at(next_deadline, self._sweep)

    def abort_all(self) -> None:
        """Drop every open connection of this route (used when the proxy shuts down)."""
        for client in list(self.clients):
            client.abort()
        for up in list(self.connecting):
            up.dead = True
            up.release()
            up.cancel_connect(timed_out=False)
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
