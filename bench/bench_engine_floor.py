"""The engine's own floor for the apply → 10 running comparison (issue 13): ten busybox sleepers created and
started at once straight through aiodocker, no orchestrator at all, per container configuration:
- ``plain``: no init, no limits (Swarm's default task);
- ``init``: ``HostConfig.Init`` (drover always runs one);
- ``drover``: what drover's agent does for a replica with limits: an init and a memory limit at the create,
  then the CPU quota update and one inspect after the start.

    .venv/bin/python bench/bench_engine_floor.py [--rounds 4] [--count 10]

Prints each variant's wall times (first create sent → last start answered) and their median, and each
median against ``plain``'s measured in the same run (rounds interleave the variants). Compare with
``bench_cli.py``: an orchestrator's apply → 10 running cannot beat the engine's floor for the same containers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import engine_idle, remove_labelled

LABEL = "drover-bench=engine-floor"
SLEEP = ["sleep", "3600"]
VARIANTS = ("plain", "init", "drover")


def config(variant: str) -> dict[str, Any]:
    host: dict[str, Any] = {"RestartPolicy": {"Name": "no"}}
    if variant != "plain":
        host["Init"] = True
    if variant == "drover":
        host["Memory"] = 64 * 1024 * 1024
    key, value = LABEL.split("=")
    return {"Image": "local/busybox:latest", "Cmd": SLEEP, "Labels": {key: value}, "HostConfig": host}


async def one(docker: Any, variant: str) -> Any:
    c = await docker.containers.create(config(variant), name=f"engine-floor-{uuid.uuid4().hex[:10]}")
    await c.start()
    if variant == "drover":  # as the agent's _start: the quota after the start, with one inspect
        await asyncio.gather(
            docker._query_json(f"containers/{c.id}/update", method="POST", data={"NanoCpus": 150_000_000}),
            c.show(),
        )
    return c


async def trial(docker: Any, variant: str, count: int) -> float:
    t0 = time.monotonic()
    containers = await asyncio.gather(*(one(docker, variant) for _ in range(count)))
    took = time.monotonic() - t0
    await asyncio.gather(*(c.delete(force=True) for c in containers))
    await engine_idle(LABEL)
    return took


async def main() -> None:
    import aiodocker

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--count", type=int, default=10)
    args = ap.parse_args()
    docker = aiodocker.Docker()
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    try:
        for _ in range(args.rounds):
            for v in VARIANTS:
                times[v].append(round(await trial(docker, v, args.count), 2))
    finally:
        await docker.close()
        remove_labelled(LABEL)
    medians = {v: statistics.median(t) for v, t in times.items()}
    print(json.dumps({
        "count": args.count, "times_s": times, "median_s": medians,
        "vs_plain": {v: round(m / medians["plain"], 2) for v, m in medians.items()},
    }))


if __name__ == "__main__":
    asyncio.run(main())
