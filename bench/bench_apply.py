"""Apply → 10 replicas running, against 10 sequential `docker run -d` in the same run; and the resident
memory of the controller and agent daemons at idle and with 100 replicas.

    .venv/bin/python bench/bench_apply.py [--trials 3]

Target (issue 3): ratio drover / docker-run ≤ 1.0. Everything runs on this machine against the local
Docker engine with the local/busybox image; no network traffic leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Api, Nats, daemon, docker, remove_labelled, rss_mib, service, stop_daemon

SLEEP = ["sleep", "3600"]


def docker_run_10(tag: str) -> float:
    t0 = time.monotonic()
    for i in range(10):
        docker("run", "-d", "--init", "--label", f"drover-bench={tag}", "--name", f"bench-{tag}-{i}",
               "local/busybox:latest", *SLEEP)
    elapsed = time.monotonic() - t0
    remove_labelled(f"drover-bench={tag}")
    return elapsed


async def running(api: Api, name: str, n: int) -> bool:
    rows = await api.call("get_containers", service=name)
    return len(rows) == n and all(r["state"] == "running" for r in rows)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    cluster = f"bench{uuid.uuid4().hex[:6]}"
    nats = Nats()
    ctl = daemon("controller", "--nats", nats.url, "--cluster", cluster)
    agent = daemon("agent", "--nats", nats.url, "--cluster", cluster, "--node", "bench-a", "--address", "127.0.0.1")
    try:
        async with Api(nats.url, cluster) as api:
            await api.wait(lambda: _node_ready(api), 30, "agent registered")
            await asyncio.sleep(2)  # let both daemons settle before reading idle memory
            idle = (rss_mib(ctl.pid), rss_mib(agent.pid))

            docker_times, drover_times = [], []
            for trial in range(args.trials):
                docker_times.append(docker_run_10(f"{cluster}-{trial}"))
                name = f"b{trial}"
                t0 = time.monotonic()
                await api.call("apply", manifests=[service(name, 10, SLEEP)])
                await api.wait(lambda n=name: running(api, n, 10), 120, "10 replicas running")
                drover_times.append(time.monotonic() - t0)
                await api.call("delete", names=[name])
                await api.wait(lambda n=name: _gone(api, n), 120, "replicas removed")
                await api.wait(lambda: _no_containers(cluster), 60, "containers removed", interval=0.2)

            await api.call("apply", manifests=[service("hundred", 100, SLEEP)])
            t100 = await api.wait(lambda: running(api, "hundred", 100), 600, "100 replicas running", interval=0.2)
            await asyncio.sleep(2)
            loaded = (rss_mib(ctl.pid), rss_mib(agent.pid))
            await api.call("delete", names=["hundred"])
            await api.wait(lambda: _no_containers(cluster), 300, "100 containers removed", interval=0.5)
    finally:
        stop_daemon(agent)
        stop_daemon(ctl)
        remove_labelled(f"drover.cluster={cluster}")
        nats.stop()

    d_med, r_med = statistics.median(docker_times), statistics.median(drover_times)
    print(f"bench_apply ({time.strftime('%Y-%m-%d')}, {args.trials} trials)")
    print(f"  10 x sequential docker run -d : median {d_med:.2f} s  ({', '.join(f'{t:.2f}' for t in docker_times)})")
    print(f"  drover apply -> 10 running    : median {r_med:.2f} s  ({', '.join(f'{t:.2f}' for t in drover_times)})")
    print(f"  ratio drover / docker run     : {r_med / d_med:.2f}  (target <= 1.0)")
    print(f"  100 replicas running after    : {t100:.1f} s")
    print(f"  RSS idle        controller {idle[0]:.1f} MiB, agent {idle[1]:.1f} MiB")
    print(f"  RSS 100 replicas controller {loaded[0]:.1f} MiB, agent {loaded[1]:.1f} MiB")


async def _node_ready(api: Api) -> bool:
    nodes = await api.call("get_nodes")
    return any(n["status"] == "ready" for n in nodes)


async def _gone(api: Api, name: str) -> bool:
    return not await api.call("get_containers", service=name)


async def _no_containers(cluster: str) -> bool:
    return not docker("ps", "-aq", "--filter", f"label=drover.cluster={cluster}").split()


if __name__ == "__main__":
    asyncio.run(main())
