"""Event-loop lag of the controller while ~1 MiB apply requests are validated.

An in-process controller (so the lag probe shares its event loop) on a throw-away nats-server receives
apply requests of about 0.9 MiB (200 services of ~4.5 KiB each: the most one NATS message holds) while a
probe task sleeps 10 ms at a time and records how late it wakes. Three ways of validating:

- ``before``: the old path, the request dumped to JSON and re-read by PyYAML, on the loop;
- ``inline``: today's ``parse_request`` (decoded data, no YAML) but on the loop;
- ``thread``: today's ``parse_request`` in a worker thread (what the controller does).

    .venv/bin/python bench/bench_apply_lag.py [--requests 3]

Target (issue 9): p99 lag < 100 ms while 1 MiB manifests are applied.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import yaml
from common import Nats

from drover.controller import preview
from drover.controller.config import ControllerConfig
from drover.controller.main import Controller
from drover.shared import bus, wire
from drover.shared.manifest import parse_request
from drover.shared.models import ApiReply
from drover.shared.subjects import Names


def request_docs(services: int = 200, tag: str = "") -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "drover/v1",
            "kind": "Service",
            "metadata": {"name": f"svc{i}"},
            "spec": {"image": "local/busybox:latest", "replicas": 0,
                     "env": {f"VAR_{j:03d}": f"value-{tag}-{j:03d}-" + "x" * 16 for j in range(120)}},
        }
        for i in range(services)
    ]


def _old_path(docs: list[Any]) -> Any:
    """What the controller did before: the decoded request dumped to JSON and re-read by PyYAML."""
    return parse_request(yaml.load(json.dumps(docs), Loader=yaml.SafeLoader))


async def _inline(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


async def probe(lags: list[float], stop: asyncio.Event, period: float = 0.01) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t0 = loop.time()
        await asyncio.sleep(period)
        lags.append(max(0.0, loop.time() - t0 - period))


async def run_mode(url: str, mode: str, requests: int) -> dict[str, float]:
    original_parse, original_thread = preview.parse_request, asyncio.to_thread
    if mode == "before":
        preview.parse_request = _old_path  # type: ignore[assignment]
    if mode in ("before", "inline"):
        preview.asyncio.to_thread = _inline  # type: ignore[attr-defined]
    cluster = "b" + uuid.uuid4().hex[:8]
    ctl = Controller(ControllerConfig(nats_url=url, cluster=cluster))
    await ctl.start()
    nc = await bus.connect(url, name="bench")
    lags: list[float] = []
    took: list[float] = []
    size = 0
    try:
        await asyncio.sleep(1.0)  # let the controller settle (leader election, first reconcile)
        stop = asyncio.Event()
        task = asyncio.get_running_loop().create_task(probe(lags, stop))
        for r in range(requests):
            payload = wire.encode({"manifests": request_docs(tag=str(r))})
            size = len(payload)
            t0 = time.monotonic()
            msg = await nc.request(Names(cluster).api("apply"), payload, timeout=120)
            took.append(time.monotonic() - t0)
            reply = ApiReply.from_wire(msg.data)
            assert reply.ok, (reply.error, reply.problems[:3])
        stop.set()
        await task
    finally:
        preview.parse_request = original_parse  # type: ignore[assignment]
        preview.asyncio.to_thread = original_thread  # type: ignore[attr-defined]
        await nc.drain()
        await ctl.stop()
    lags.sort()
    return {
        "request_kib": size / 1024,
        "apply_s": statistics.median(took),
        "lag_p99_ms": 1000 * lags[int(0.99 * (len(lags) - 1))],
        "lag_max_ms": 1000 * lags[-1],
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("--modes", default="before,inline,thread")
    args = ap.parse_args()
    nats = Nats()
    try:
        print(f"{'mode':8} {'request':>9} {'apply (median)':>15} {'lag p99':>9} {'lag max':>9}")
        for mode in args.modes.split(","):
            r = await run_mode(nats.url, mode, args.requests)
            print(f"{mode:8} {r['request_kib']:7.0f}Ki {r['apply_s']:14.2f}s {r['lag_p99_ms']:7.0f}ms "
                  f"{r['lag_max_ms']:7.0f}ms")
        big = request_docs()
        t0 = time.perf_counter()
        parse_request(big)
        print(f"parse_request alone: {time.perf_counter() - t0:.2f}s")
    finally:
        nats.stop()


if __name__ == "__main__":
    asyncio.run(main())
