"""Zero-downtime rolling update (issue 6): 10,000 HTTP requests (bounded, to 127.0.0.1 only) sent through
the per-node proxy while a 4-replica service rolls from revision 1 to 2. Prints the failed requests
(target 0), the rollout's duration, and how many answers came from each revision.

    .venv/bin/python bench/bench_rollout.py [--requests 10000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import socket
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Api, Nats, daemon, remove_labelled, stop_daemon


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def web(version: str, expose: int) -> dict[str, object]:
    script = f"mkdir -p /tmp/w && echo {version} > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w"
    return {
        "apiVersion": "drover/v1",
        "kind": "Service",
        "metadata": {"name": "roll"},
        "spec": {
            "image": "local/busybox:latest",
            "command": ["sh", "-c", script],
            "replicas": 4,
            "ports": [{"name": "http", "container": 8080, "expose": expose}],
            "resources": {"cpu": 0.05, "memory": "16Mi"},
            "health": {"http": {"path": "/", "port": 8080}, "interval": "500ms", "timeout": "500ms"},
            "stop_grace": "2s",
            "update": {"max_surge": 1, "max_unavailable": 0, "min_ready": "1s"},
        },
    }


async def one_request(port: int) -> str:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    try:
        writer.write(b"GET / HTTP/1.0\r\nHost: roll\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n")[0]:
        raise RuntimeError(f"bad response: {head[:60]!r}")
    return body.decode().strip()


async def load(port: int, total: int, concurrency: int, stats: dict[str, int], errors: list[str]) -> None:
    left = [total]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            try:
                stats[await one_request(port)] += 1
            except Exception as exc:
                stats["FAILED"] += 1
                if len(errors) < 10:
                    errors.append(repr(exc))

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    cluster = f"roll{uuid.uuid4().hex[:6]}"
    expose = free_port()
    nats = Nats()
    ctl = daemon("controller", "--nats", nats.url, "--cluster", cluster)
    agent = daemon("agent", "--nats", nats.url, "--cluster", cluster, "--node", "r1", "--address", "127.0.0.1")
    try:
        async with Api(nats.url, cluster) as api:
            await api.wait(lambda: _any_node(api), 30, "agent registered")
            await api.call("apply", manifests=[web("v1", expose)])
            await api.wait(lambda: _available(api, 1), 60, "revision 1 available")
            await api.wait(lambda: _answers(expose), 30, "proxy answering")
            stats: dict[str, int] = collections.Counter()
            errors: list[str] = []
            t_load = time.monotonic()
            load_task = asyncio.get_running_loop().create_task(
                load(expose, args.requests, args.concurrency, stats, errors))
            while sum(stats.values()) < args.requests // 10:  # roll once the load is well under way
                await asyncio.sleep(0.05)
            t0 = time.monotonic()
            await api.call("apply", manifests=[web("v2", expose)])
            rollout = await api.wait(lambda: _available(api, 2), 120, "revision 2 available", interval=0.05)
            await load_task
            load_s = time.monotonic() - t_load
            await api.call("delete", names=["roll"])
            await api.wait(lambda: _gone(api), 60, "removed")
    finally:
        stop_daemon(agent)
        stop_daemon(ctl)
        remove_labelled(f"drover.cluster={cluster}")
        nats.stop()
    print(f"bench_rollout ({time.strftime('%Y-%m-%d')})")
    print(f"  requests {args.requests} (concurrency {args.concurrency}, a new connection each) in {load_s:.1f} s")
    print(f"  answers: v1 {stats['v1']}, v2 {stats['v2']}; failed {stats['FAILED']} (target 0)")
    print(f"  rollout 1 -> 2 of 4 replicas (max_surge 1, min_ready 1s): {rollout:.1f} s "
          f"(started {t0 - t_load:.1f} s into the load)")
    for e in errors:
        print("  error:", e)


async def _any_node(api: Api) -> bool:
    return any(n["status"] == "ready" for n in await api.call("get_nodes"))


async def _available(api: Api, revision: int) -> bool:
    rows = await api.call("get_services", name="roll")
    return bool(rows) and rows[0]["revision"] == revision and rows[0]["status"] == "available"


async def _answers(port: int) -> bool:
    try:
        return await one_request(port) == "v1"
    except Exception:
        return False


async def _gone(api: Api) -> bool:
    return not await api.call("get_containers", service="roll")


if __name__ == "__main__":
    asyncio.run(main())
