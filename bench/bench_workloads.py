"""Workload benchmarks: job throughput and schedule accuracy.

    .venv/bin/python bench/bench_workloads.py [--jobs 100] [--parallelism 10] [--ticks 20]

1. Job throughput: a `mode: job` of N one-second completions (`sleep 1`, `parallelism` at a time) from
   apply to `succeeded`, against N sequential `docker run --rm ... sleep 1` in the same run.
2. Cron accuracy: a `schedule: "@every 5s"` job; for each of `ticks` runs, the delay from its tick to its
   container's start (median, max).
Plain nats-server, one controller and one Docker agent on this machine (local/busybox; nothing leaves 127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Api, Nats, daemon, docker, remove_labelled, service, stop_daemon


def docker_sequential(n: int, tag: str) -> float:
    t0 = time.monotonic()
    for i in range(n):
        docker("run", "--rm", "--init", "--label", f"drover-bench={tag}", "--name", f"bench-{tag}-{i}",
               "local/busybox:latest", "sleep", "1")
    return time.monotonic() - t0


def _ts(value: str | None) -> float:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() if value else 0.0


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--parallelism", type=int, default=10)
    ap.add_argument("--ticks", type=int, default=20)
    args = ap.parse_args()
    cluster = f"benchw{uuid.uuid4().hex[:6]}"
    nats = Nats()
    ctl = daemon("controller", "--nats", nats.url, "--cluster", cluster)
    agent = daemon("agent", "--nats", nats.url, "--cluster", cluster, "--node", "bench-w", "--address", "127.0.0.1")
    try:
        async with Api(nats.url, cluster) as api:
            await api.wait(lambda: _node_ready(api), 30, "agent registered")
            seq = docker_sequential(args.jobs, cluster)

            job = service("jobs", 1, ["sleep", "1"], mode="job",
                          job={"completions": args.jobs, "parallelism": args.parallelism, "backoff_limit": 3})
            t0 = time.monotonic()
            await api.call("apply", manifests=[job])
            await api.wait(lambda: _status(api, "jobs", "succeeded"), 1200, "job succeeded", interval=0.1)
            took = time.monotonic() - t0
            await api.call("delete", names=["jobs"])
            await api.wait(lambda: _no_containers(cluster), 300, "job containers removed", interval=0.5)

            cron = service("tick", 1, ["true"], mode="job", schedule="@every 5s")
            await api.call("apply", manifests=[cron])
            delays: dict[int, float] = {}

            async def enough() -> bool:
                desc = await api.call("describe_service", name="tick")
                for c in desc["containers"]:
                    run = int(c["id"].split("-")[0][1:])
                    if c.get("started_at") and run not in delays:
                        started = _ts(c["started_at"])
                        tick = [r for r in desc.get("runs", []) if r.get("run") == run]
                        if tick and tick[0].get("tick"):
                            delays[run] = started - float(tick[0]["tick"])
                return len(delays) >= args.ticks

            await api.wait(enough, 5 * args.ticks + 60, f"{args.ticks} ticks", interval=0.2)
            await api.call("delete", names=["tick"])
    finally:
        stop_daemon(agent)
        stop_daemon(ctl)
        remove_labelled(f"drover.cluster={cluster}")
        remove_labelled(f"drover-bench={cluster}")
        nats.stop()

    values = sorted(delays.values())[: args.ticks]
    print(f"bench_workloads ({time.strftime('%Y-%m-%d')})")
    print(f"  {args.jobs} x sequential docker run --rm sleep 1 : {seq:.1f} s = {args.jobs / seq:.2f} completions/s")
    print(f"  drover job, {args.jobs} completions, parallelism {args.parallelism}: {took:.1f} s "
          f"= {args.jobs / took:.2f} completions/s ({seq / took:.1f}x)")
    print(f"  @every 5s, {len(values)} ticks: start delay after the tick median {statistics.median(values):.2f} s, "
          f"max {max(values):.2f} s")


async def _node_ready(api: Api) -> bool:
    return any(n["status"] == "ready" for n in await api.call("get_nodes"))


async def _status(api: Api, name: str, status: str) -> bool:
    rows = await api.call("get_services", name=name)
    return bool(rows) and rows[0]["status"] == status


async def _no_containers(cluster: str) -> bool:
    return not docker("ps", "-aq", "--filter", f"label=drover.cluster={cluster}").split()


if __name__ == "__main__":
    asyncio.run(main())
