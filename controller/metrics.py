"""Prometheus metrics of the controller, in a registry of its own (several components may share a process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server


class ControllerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.reconcile_seconds = Histogram(
            "drover_controller_reconcile_seconds", "Time to plan one reconcile pass", registry=r
        )
        self.assignments_written = Counter(
            "drover_controller_assignments_written_total", "Node assignments written", registry=r
        )
        self.heartbeats = Counter("drover_controller_heartbeats_total", "Agent heartbeats received", registry=r)
        self.bad_messages = Counter(
            "drover_controller_bad_messages_total", "Undecodable bus messages dropped", registry=r
        )
        self.api_requests = Counter(
            "drover_controller_api_requests_total", "API requests by verb", ["verb"], registry=r
        )
        self.loop_lag = Histogram(
            "drover_controller_loop_lag_seconds", "How late a 100 ms timer fires on the controller's event loop",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0), registry=r,
        )
        self._server: Any = None

    def serve(self, address: str, port: int) -> None:
        self._server = start_http_server(port, addr=address, registry=self.registry)

    def close(self) -> None:
        if self._server is not None:
            server, _thread = self._server
            server.shutdown()
            self._server = None
