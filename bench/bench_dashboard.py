"""Dashboard cost on the controller: building the overview's sections (what every tick of the live
stream costs, once for all open pages) for clusters of growing size, with the API answered in-process by
hand-built rows (no NATS, no Docker: this measures the dashboard's own rendering). Baseline, in the same run:
every row rendered (no 500-row cap per table).

    .venv/bin/python bench/bench_dashboard.py
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from drover.controller.dashboard import Dashboard, render


def fake_api(services: int, per_service: int, nodes: int) -> Any:
    svc = [
        {"name": f"s{i}", "image": "local/busybox:latest", "revision": 2, "replicas": per_service, "running":
         per_service, "ready": per_service, "updated": per_service, "status": "available", "message": ""}
        for i in range(services)
    ]
    nds = [
        {"name": f"n{i}", "status": "ready", "address": "127.0.0.1", "capacity": {"cpu": 8.0, "memory": 2**34},
         "allocated": {"cpu": 1.0, "memory": 2**30}, "containers": 10, "last_heartbeat": "2026-12-01T10:00:00Z"}
        for i in range(nodes)
    ]
    ctr = [
        {"name": f"drover-s{i}-{j:08x}", "service": f"s{i}", "node": f"n{(i * per_service + j) % nodes}",
         "revision": 2, "state": "running", "ready": True, "restarts": 0, "host_port": 30000 + j}
        for i in range(services) for j in range(per_service)
    ]
    evs = [{"time": "2026-12-01T10:00:00Z", "kind": "scheduled", "service": "s1", "node": "n1",
            "message": "placed on n1"}] * 100

    async def query(verb: str, body: dict[str, Any]) -> Any:
        if verb == "describe_service":
            return {"autoscale": {"policy": None}}
        return {"get_services": svc, "get_nodes": nds, "get_containers": ctr, "events": evs}[verb]

    return query


async def measure(services: int, per_service: int, nodes: int, rounds: int = 10) -> tuple[float, int]:
    dash = Dashboard(fake_api(services, per_service, nodes), dict, cluster="bench")
    times = []
    size = 0
    for i in range(rounds):
        dash._generation = i + 1  # a new tick each round: no cache hit
        t0 = time.perf_counter()
        sections = await dash.main_sections()
        times.append(time.perf_counter() - t0)
        size = sum(len(v) for v in sections.values())
    return statistics.median(times), size


async def main() -> None:
    print(f"{'services':>8} {'replicas':>8} {'nodes':>6} {'all rows ms':>12} {'KiB':>6} {'capped ms':>10} {'KiB':>6}")
    cap = render.MAX_ROWS
    for services, per, nodes in ((10, 3, 3), (100, 10, 50), (1000, 10, 1000)):
        render.MAX_ROWS = 10**9
        full, full_size = await measure(services, per, nodes)
        render.MAX_ROWS = cap
        median, size = await measure(services, per, nodes)
        print(
            f"{services:>8} {services * per:>8} {nodes:>6} {full * 1000:>12.1f} {full_size / 1024:>6.0f} "
            f"{median * 1000:>10.1f} {size / 1024:>6.0f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
