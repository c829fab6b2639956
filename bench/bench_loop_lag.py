"""Controller event-loop lag under big inputs (issue 9): 1 MiB-class manifests applied while 10,000 replicas are
planned, each part in its own process (nats-server, controller, a hollow fleet).

    .venv/bin/python bench/bench_loop_lag.py [--nodes 100] [--replicas 10000] [--applies 5]

1. ``drover agent --driver sim --count NODES`` registers hollow nodes.
2. Load, at the same time: ``apply`` of a request of about 0.9 MiB (``--big-services`` services of about
   4.5 KiB with zero replicas, each with a large ``env``: validation and storage without a huge assignment),
   re-applied ``--applies`` times with a changed value (a new revision each); and one service scaled to
   ``--replicas`` replicas (the planning load) until all of them run.
3. The controller's own loop lag (a 100 ms timer's lateness), counted over the load only: p50, p99 and the
   worst sample, exact to the millisecond (``drover_controller_loop_lag_ms_total``), and the histogram's
   bucket bounds as before; plus the round-trip of a cheap API request (``leader``) every 100 ms meanwhile.

Prints one JSON line. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import _nodes_ready, free_port, manifest, totals
from common import VENV_BIN, Api, Nats, daemon, stop_daemon

from drover.shared import wire
from drover.shared.models import ApiReply


def lag_buckets(port: int) -> list[tuple[float, float]]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = []
    for line in text.splitlines():
        if line.startswith("drover_controller_loop_lag_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out.append((float(le), float(line.rsplit(" ", 1)[1])))
    return out


def lag_ms_counts(port: int) -> dict[float, float]:
    """The controller's loop-lag samples by whole milliseconds (``drover_controller_loop_lag_ms_total``)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("drover_controller_loop_lag_ms_total{"):
            ms = line.split('ms="', 1)[1].split('"', 1)[0]
            out[float(ms)] = float(line.rsplit(" ", 1)[1])
    return out


def quantile_ms(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """The ``q`` quantile (ms, exact to the millisecond: lags are counted rounded up) of the samples taken
    between two scrapes; ``inf`` when it is over the counter's 2 s cap."""
    diff = sorted((ms, n - before.get(ms, 0.0)) for ms, n in after.items())
    total = sum(n for _, n in diff)
    seen = 0.0
    for ms, n in diff:
        seen += n
        if total and seen >= q * total:
            return ms
    return None


def quantile_bound(before: list[tuple[float, float]], after: list[tuple[float, float]], q: float) -> float | None:
    """Upper bound (ms) of the bucket holding the ``q`` quantile of the samples taken between two scrapes."""
    diff = [(le, a - b) for (le, a), (_, b) in zip(after, before, strict=True)]
    total = diff[-1][1] if diff else 0
    for le, count in diff:
        if total and count >= q * total:
            return le * 1000
    return None


def big_manifests(count: int, round_: int, target_bytes: int) -> list[dict[str, object]]:
    per_service = target_bytes // count
    value = "x" * 90
    entries = max(1, per_service // 110)
    out = []
    for i in range(count):
        m = manifest(f"big{i:03d}", 0)
        env = {f"K{j:04d}": value for j in range(entries)}
        env["ROUND"] = str(round_)
        m["spec"]["env"] = env  # type: ignore[index]
        out.append(m)
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--replicas", type=int, default=10_000)
    ap.add_argument("--applies", type=int, default=5)
    ap.add_argument("--big-services", type=int, default=200)
    ap.add_argument("--big-bytes", type=int, default=900_000)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--py-spy", metavar="OUT", help="record the controller's stacks during the load with py-spy "
                    "(speedscope format, idle samples included, in time order: bench/loop_blocks.py finds the "
                    "longest runs of the loop's thread being busy; py-spy installed in the venv)")
    args = ap.parse_args()
    cluster = f"lag{uuid.uuid4().hex[:6]}"
    nats = Nats()
    metrics_port = free_port()
    ctl = daemon("controller", "--nats", nats.url, "--cluster", cluster, "--log-level", "warning",
                 "--metrics-port", str(metrics_port))
    fleet = daemon("agent", "--nats", nats.url, "--cluster", cluster, "--driver", "sim", "--count", str(args.nodes),
                   "--node-prefix", "h", "--cpu", "256", "--memory", "256Gi", "--log-level", "warning")
    out: dict[str, object] = {"nodes": args.nodes, "replicas": args.replicas,
                              "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        async with Api(nats.url, cluster) as api:
            await api.wait(lambda: _nodes_ready(api, args.nodes), 120, "nodes registered", interval=0.2)
            await api.wait(lambda: api.call("leader"), 30, "a leader")
            body = big_manifests(args.big_services, 0, args.big_bytes)
            out["request_bytes"] = len(json.dumps(body))
            before = lag_buckets(metrics_port)
            before_ms = lag_ms_counts(metrics_port)
            rtts: list[float] = []
            done = asyncio.Event()

            async def ping() -> None:
                while not done.is_set():
                    r0 = time.perf_counter()
                    await api.call("leader")
                    rtts.append((time.perf_counter() - r0) * 1000)
                    await asyncio.sleep(0.1)

            async def applies() -> list[float]:
                took = []
                for r in range(args.applies):
                    t = time.perf_counter()
                    body = wire.encode({"manifests": big_manifests(args.big_services, r, args.big_bytes)})
                    reply = ApiReply.from_wire((await api.nc.request(api.names.api("apply"), body, timeout=120)).data)
                    if not reply.ok:
                        raise RuntimeError(f"apply: {reply.error}")
                    took.append(time.perf_counter() - t)
                return took

            spy = None
            if args.py_spy:
                spy = subprocess.Popen(
                    [str(VENV_BIN / "py-spy"), "record", "--pid", str(ctl.pid), "--format", "speedscope", "--threads",
                     "--idle", "--nonblocking", "--rate", "200", "-o", args.py_spy],
                    stdout=subprocess.DEVNULL,
                )
            pinger = asyncio.get_running_loop().create_task(ping())
            t0 = time.monotonic()
            await api.call("apply", manifests=[manifest("bulk", args.replicas)])
            apply_times = await applies()

            async def bulk_running() -> bool:
                rows = await api.call("get_services", name="bulk")
                return bool(rows) and rows[0]["running"] == args.replicas

            try:
                await api.wait(bulk_running, args.timeout, "all replicas running", interval=0.25)
                out["all_running_s"] = round(time.monotonic() - t0, 2)
            except TimeoutError:
                out["all_running_s"] = None
                out["running_at_timeout"] = (await totals(api))[0]
            done.set()
            await pinger
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
            after = lag_buckets(metrics_port)
            after_ms = lag_ms_counts(metrics_port)
            out["loop_lag_p50_ms"] = quantile_ms(before_ms, after_ms, 0.5)
            out["loop_lag_p99_ms"] = quantile_ms(before_ms, after_ms, 0.99)
            out["loop_lag_max_ms"] = quantile_ms(before_ms, after_ms, 1.0)
            out["apply_big_s_median"] = round(statistics.median(apply_times), 2)
            out["loop_lag_p99_ms_le"] = quantile_bound(before, after, 0.99)
            out["loop_lag_max_ms_le"] = quantile_bound(before, after, 1.0)
            out["loop_lag_samples"] = int(after[-1][1] - before[-1][1]) if after else 0
            rtts.sort()
            out["api_rtt_p50_ms"] = round(statistics.median(rtts), 1)
            out["api_rtt_p99_ms"] = round(rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))], 1)
    finally:
        stop_daemon(fleet)
        stop_daemon(ctl)
        nats.stop()
    out["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
