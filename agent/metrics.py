"""Prometheus metrics of one agent (its own registry, so several agents can live in one process)."""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class AgentMetrics:
    def __init__(self, node: str):
        self.registry = CollectorRegistry()
        self.restarts = Counter(
            "drover_agent_restarts_total", "Containers restarted in place", ["node"], registry=self.registry
        ).labels(node)
        self._actions = Counter(
            "drover_agent_actions_total",
            "Reconcile actions executed, by kind",
            ["node", "kind"],
            registry=self.registry,
        )
        self.probe_failures = Counter(
            "drover_agent_probe_failures_total", "Failed health probes", ["node"], registry=self.registry
        ).labels(node)
        self._containers = Gauge(
            "drover_agent_containers",
            "Containers of this node by state",
            ["node", "state"],
            registry=self.registry,
        )
        self.node = node
        self._server: Any = None
        self._thread: Any = None
        self._states: set[str] = set()

    def action(self, kind: str) -> None:
        self._actions.labels(self.node, kind).inc()

    def set_containers(self, by_state: dict[str, int]) -> None:
        for state in self._states | set(by_state):
            self._containers.labels(self.node, state).set(by_state.get(state, 0))
        self._states |= set(by_state)

    def serve(self, address: str, port: int) -> int:
        """Serve /metrics on address:port (0 picks a free port); returns the port."""
        server, thread = start_http_server(port, addr=address, registry=self.registry)
        self._server, self._thread = server, thread
        return int(server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.shutdown()
                self._server.server_close()
            self._server = None
