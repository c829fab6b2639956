"""Listeners of the per-node proxy: ``ServiceProxy`` (one service's ``expose`` port) and
``NodeProxy`` (all of them, kept in line with the services the agent knows about).

``NodeProxy.set_services({service: port})`` opens what is new, closes what went away (connections
already open go on until they end), and moves a service whose port changed. A port that cannot be
bound is logged, counted and reported by ``errors()``; it never raises into the agent, and the
next ``set_services`` tries it again. ``resolve(service)`` is called for every new connection and
every retry, so it must be cheap (the agent keeps a tuple per service and swaps it on change).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Mapping, Sequence

import structlog

from drover.agent.proxy.balancer import STRATEGIES, Backend, make_balancer
from drover.agent.proxy.relay import ClientSide
from drover.agent.proxy.route import IDLE_TIMEOUT, MAX_CLIENTS, ProxyStats, Route

log = structlog.get_logger("drover.agent.proxy")

LISTEN_BACKLOG = 1024
# A node's proxy holds a new connection this long for a ready backend rather than fail it at once: while a lost
# node's replicas are replaced, or a restarted agent has not yet heard the endpoints from the gossip, the
# table is empty (or holds only failed backends) for a second or two.
NODE_BACKEND_WAIT = 3.0


class ServiceProxy:
    """One listening socket forwarding to one service's ready backends."""

    def __init__(
        self,
        service: str,
        address: str,
        port: int,
        resolve: Callable[[], Sequence[Backend]],
        *,
        strategy: str = "round-robin",
        connect_timeout: float = 1.0,
        max_attempts: int = 3,
        max_clients: int = MAX_CLIENTS,
        idle_timeout: float = IDLE_TIMEOUT,
        backend_wait: float = 0.0,
    ) -> None:
        self.service = service
        self._backend_wait = backend_wait
        self._max_clients = max_clients
        self._idle_timeout = idle_timeout
        self.address = address
        self.port = port
        self.strategy = strategy
        self._resolve = resolve
        self._balancer = make_balancer(strategy)
        self._connect_timeout = connect_timeout
        self._max_attempts = max_attempts
        self._route: Route | None = None
        self._server: asyncio.Server | None = None

    @property
    def stats(self) -> ProxyStats:
        return self._route.stats if self._route is not None else ProxyStats()

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def bound_port(self) -> int:
        """The port actually bound (differs from ``port`` only when ``port`` was 0)."""
        if self._server is None or not self._server.sockets:
            return self.port
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def start(self) -> None:
        """Bind and listen; ``OSError`` when the port cannot be bound, ``ValueError`` when it is not a port."""
        if self._server is not None:
            return
        if not 0 <= self.port <= 65535:  # uvloop would silently wrap it
            raise ValueError(f"port {self.port} out of range")
        loop = asyncio.get_running_loop()
        if self._route is None:
            self._route = Route(
                self.service, self._resolve, self._balancer,
                connect_timeout=self._connect_timeout, max_attempts=self._max_attempts, loop=loop,
                max_clients=self._max_clients, idle_timeout=self._idle_timeout, backend_wait=self._backend_wait,
            )
        route = self._route

        def factory() -> ClientSide:
            return ClientSide(route)

        self._server = await loop.create_server(
            factory, self.address, self.port, family=_family(self.address), reuse_address=True,
            backlog=LISTEN_BACKLOG,
        )

    def stop_listening(self) -> None:
        """Close the listening socket; connections already open go on until they end."""
        if self._server is not None:
            self._server.close()
            self._server = None

    @property
    def open_connections(self) -> int:
        return len(self._route.clients) if self._route is not None else 0

    async def close(self) -> None:
        """Stop listening and drop every open connection."""
        self.stop_listening()
        if self._route is not None:
            self._route.abort_all()
        await asyncio.sleep(0)  # let the transports' connection_lost callbacks run


class NodeProxy:
    """The proxy of one node: a ``ServiceProxy`` per service, on ``address``."""

    def __init__(
        self,
        address: str,
        resolve: Callable[[str], Sequence[Backend]],
        *,
        strategy: str = "round-robin",
        connect_timeout: float = 1.0,
        max_attempts: int = 3,
        backend_wait: float = NODE_BACKEND_WAIT,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown proxy strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.address = address
        self._resolve = resolve
        self._strategy = strategy
        self._connect_timeout = connect_timeout
        self._max_attempts = max_attempts
        self._backend_wait = backend_wait
        self._proxies: dict[str, ServiceProxy] = {}  # listening or failed to bind, by service
        self._draining: list[ServiceProxy] = []  # removed services whose connections may still be open
        self._errors: dict[str, str] = {}
        self.bind_failures = 0  # total ports that could not be bound
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ queries
    @property
    def stats(self) -> dict[str, ProxyStats]:
        """Per-service counters (connections, active, failed_attempts, retries, no_backend)."""
        return {service: proxy.stats for service, proxy in self._proxies.items()}

    def errors(self) -> dict[str, str]:
        """Services whose port could not be bound, with the reason."""
        return dict(self._errors)

    def services(self) -> dict[str, int]:
        """Services listening now, with their port."""
        return {s: p.bound_port for s, p in self._proxies.items() if p.listening}

    def proxy(self, service: str) -> ServiceProxy | None:
        return self._proxies.get(service)

    # ------------------------------------------------------------------ changes
    async def set_services(self, services: Mapping[str, int]) -> None:
        """Listen on exactly ``services`` ({service: expose port}). Never raises for a port that
        cannot be bound: that service is left out, logged, counted and listed by ``errors()``."""
        async with self._lock:
            for service in [s for s in self._proxies if s not in services]:
                self._retire(self._proxies.pop(service))
                self._errors.pop(service, None)
                log.info("proxy_service_removed", service=service)
            for service, port in services.items():
                proxy = self._proxies.get(service)
                if proxy is not None and proxy.port != port:
                    self._retire(self._proxies.pop(service))
                    proxy = None
                if proxy is None:
                    proxy = ServiceProxy(
                        service, self.address, port, self._resolver(service), strategy=self._strategy,
                        connect_timeout=self._connect_timeout, max_attempts=self._max_attempts,
                        backend_wait=self._backend_wait,
                    )
                    self._proxies[service] = proxy
                if proxy.listening:
                    continue
                try:
                    await proxy.start()
                except (OSError, OverflowError, ValueError) as exc:
                    self.bind_failures += 1
                    self._errors[service] = f"cannot listen on {self.address}:{port}: {exc}"
                    log.warning("proxy_bind_failed", service=service, address=self.address, port=port, error=str(exc))
                else:
                    if self._errors.pop(service, None) is not None:
                        log.info("proxy_bind_recovered", service=service, port=port)
                    log.info("proxy_listening", service=service, address=self.address, port=proxy.bound_port)
            self._draining = [p for p in self._draining if p.open_connections]

    def _resolver(self, service: str) -> Callable[[], Sequence[Backend]]:
        resolve = self._resolve

        def resolve_service() -> Sequence[Backend]:
            return resolve(service)

        return resolve_service

    def _retire(self, proxy: ServiceProxy) -> None:
        proxy.stop_listening()
        if proxy.open_connections:
            self._draining.append(proxy)

    async def close(self) -> None:
        """Stop every listener and drop every open connection."""
        async with self._lock:
            proxies = [*self._proxies.values(), *self._draining]
            self._proxies.clear()
            self._draining.clear()
            self._errors.clear()
            for proxy in proxies:
                await proxy.close()


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET
