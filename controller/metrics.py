"""Prometheus metrics of the controller, in a registry of its own (several components may share a process)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

LAG_MS_CAP = 2000  # lags beyond 2 s are counted together (label "inf"): a bounded number of series


class LagTally(Collector):
    """The loop lag at 1 ms resolution: ``drover_controller_loop_lag_ms_total{ms="N"}`` counts the samples
    whose lag, rounded up to a whole millisecond, is N (only the values seen, at most ``LAG_MS_CAP`` + 1
    series). The histogram's buckets (…, 50, 100, 200 ms) only bound a quantile; two scrapes of this give
    the exact p99 (to the millisecond) of the samples taken between them (``bench/bench_loop_lag.py``)."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def observe(self, lag: float) -> None:
        ms = min(LAG_MS_CAP + 1, max(0, math.ceil(lag * 1000)))
        self.counts[ms] = self.counts.get(ms, 0) + 1

    def collect(self) -> Iterator[CounterMetricFamily]:
        fam = CounterMetricFamily(
            "drover_controller_loop_lag_ms", "Loop-lag samples by lateness in whole milliseconds (rounded up)",
            labels=["ms"],
        )
        for ms, n in sorted(dict(self.counts).items()):
            fam.add_metric(["inf" if ms > LAG_MS_CAP else str(ms)], n)
        yield fam


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
        self.api_unavailable = Counter(
            "drover_controller_api_unavailable_total",
            "API reads answered 'unavailable': not proven current in time after a pause or reconnect", registry=r,
        )
        self.loop_lag = Histogram(
            "drover_controller_loop_lag_seconds", "How late a 100 ms timer fires on the controller's event loop",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0), registry=r,
        )
        self.loop_lag_ms = LagTally()
        r.register(self.loop_lag_ms)
        self._server: Any = None

    def observe_loop_lag(self, lag: float) -> None:
        self.loop_lag.observe(lag)
        self.loop_lag_ms.observe(lag)

    def serve(self, address: str, port: int) -> None:
        self._server = start_http_server(port, addr=address, registry=self.registry)

    def close(self) -> None:
        if self._server is not None:
            server, _thread = self._server
            server.shutdown()
            self._server = None
