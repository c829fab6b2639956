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
from dataclasses import dataclass, field
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


async def load(port: int, total: int, concurrency: int, stats: dict[str, int], errors: list[str],
               stop: asyncio.Event | None = None) -> None:
    """At most ``total`` requests, ``concurrency`` at a time; fewer if ``stop`` is set first."""
    left = [total]

    async def worker() -> None:
        while left[0] > 0 and not (stop and stop.is_set()):
            left[0] -= 1
            try:
                stats[await one_request(port)] += 1
            except Exception as exc:
                stats["FAILED"] += 1
                if len(errors) < 10:
                    errors.append(repr(exc))

    await asyncio.gather(*(worker() for _ in range(concurrency)))


@dataclass
class Roll:
    """One rolling update under load: its duration and what the load saw."""

    rollout_s: float
    load_s: float
    started_s: float  # how far into the load the new revision was applied
    stats: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(self.stats.values())


async def roll_under_load(api: Api, expose: int, version: str, revision: int, requests: int, concurrency: int,
                          *, until_rolled: bool = False) -> Roll:
    """Load the service's proxy port with ``requests`` requests and, once a tenth of them were answered, apply
    ``web(version)`` and wait until ``revision`` is available. ``until_rolled``: stop the load half a second
    after the rollout instead (``requests`` is then only a bound), so the load covers the whole rollout."""
    stats: collections.Counter[str] = collections.Counter()
    errors: list[str] = []
    stop = asyncio.Event() if until_rolled else None
    t_load = time.monotonic()
    load_task = asyncio.get_running_loop().create_task(load(expose, requests, concurrency, stats, errors, stop))
    warm = 0 if until_rolled else requests // 10
    while sum(stats.values()) < warm and not load_task.done():  # roll once the load is well under way
        await asyncio.sleep(0.05)
    if until_rolled:
        await asyncio.sleep(0.5)
    t0 = time.monotonic()
    await api.call("apply", manifests=[web(version, expose)])
    rollout = await api.wait(lambda: _available(api, revision), 120, f"revision {revision} available",
                             interval=0.05)
    if stop is not None:
        await asyncio.sleep(0.5)
        stop.set()
    await load_task
    return Roll(rollout, time.monotonic() - t_load, t0 - t_load, stats, errors)


async def start_web(api: Api, expose: int) -> None:
    """Revision 1 of the ``roll`` service available and answering through the proxy."""
    await api.call("apply", manifests=[web("v1", expose)])
    await api.wait(lambda: _available(api, 1), 60, "revision 1 available")
    await api.wait(lambda: answers(expose), 30, "proxy answering")


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
            await start_web(api, expose)
            roll = await roll_under_load(api, expose, "v2", 2, args.requests, args.concurrency)
            await api.call("delete", names=["roll"])
            await api.wait(lambda: _gone(api), 60, "removed")
    finally:
        stop_daemon(agent)
        stop_daemon(ctl)
        remove_labelled(f"drover.cluster={cluster}")
        nats.stop()
    stats = roll.stats
    print(f"bench_rollout ({time.strftime('%Y-%m-%d')})")
    print(f"  requests {args.requests} (concurrency {args.concurrency}, a new connection each) in {roll.load_s:.1f} s")
    print(f"  answers: v1 {stats['v1']}, v2 {stats['v2']}; failed {stats['FAILED']} (target 0)")
    print(f"  rollout 1 -> 2 of 4 replicas (max_surge 1, min_ready 1s): {roll.rollout_s:.1f} s "
          f"(started {roll.started_s:.1f} s into the load)")
    for e in roll.errors:
        print("  error:", e)


async def _any_node(api: Api) -> bool:
    return any(n["status"] == "ready" for n in await api.call("get_nodes"))


async def _available(api: Api, revision: int) -> bool:
    rows = await api.call("get_services", name="roll")
    return bool(rows) and rows[0]["revision"] == revision and rows[0]["status"] == "available"


async def answers(port: int) -> bool:
    try:
        return await one_request(port) == "v1"
    except Exception:
        return False


async def _gone(api: Api) -> bool:
    return not await api.call("get_containers", service="roll")


if __name__ == "__main__":
    asyncio.run(main())
