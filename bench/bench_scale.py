"""Scale: hollow nodes and many replicas, each part in its own process (nats-server, controller, fleet).

    .venv/bin/python bench/bench_scale.py --nodes 1000 --services 100 --replicas 100 [--heartbeat-seconds 10]

1. ``drover agent --driver sim --count NODES`` registers NODES hollow nodes; ``apply`` SERVICES services of
   REPLICAS replicas each (one API call per service, as a user applying a directory would) → the time until
   every replica is reported running, and the controller's peak resident memory.
2. Heartbeat load: NODES nodes at 1 Hz for a while with nothing to do → the controller's CPU share, and the
   round-trip of a cheap API request (``leader``) as the controller's event-loop lag seen from outside
   (p50/p99).
3. One node with replicas is told to die → the time until all of its replicas run elsewhere.
4. The controller held its lease throughout (its term never changed).

Prints one JSON line of figures. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import VENV_BIN, Api, Nats, daemon, rss_mib, stop_daemon


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime in clock ticks (100 Hz)


def manifest(name: str, replicas: int) -> dict[str, object]:
    return {
        "apiVersion": "drover/v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"image": "local/busybox:latest", "command": ["sleep", "3600"], "replicas": replicas,
                 "resources": {"cpu": 0.01, "memory": "8Mi"}},
    }


async def totals(api: Api) -> tuple[int, int]:
    rows = await api.call("get_services", name=None)
    return sum(r["running"] for r in rows), sum(r["replicas"] for r in rows)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--services", type=int, default=10)
    ap.add_argument("--replicas", type=int, default=100)
    ap.add_argument("--heartbeat-seconds", type=float, default=10.0)
    ap.add_argument("--fleets", type=int, default=1, help="hollow fleet processes sharing the nodes")
    ap.add_argument("--skip-cli", action="store_true", help="do not time the CLI's listings")
    ap.add_argument("--cli-lean", action="store_true",
                    help="time only get services, get containers --service and describe service")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--py-spy", metavar="OUT", help="record the controller with py-spy during the apply (OUT.apply), "
                    "the heartbeat load (OUT.rest) and a lost node's replacement (OUT.lost) (raw format: one line per "
                    "stack and thread, with counts; py-spy installed in the venv)")
    args = ap.parse_args()
    total = args.services * args.replicas
    cluster = f"scale{uuid.uuid4().hex[:6]}"
    nats = Nats()
    metrics_port = free_port()
    ctl = daemon("controller", "--nats", nats.url, "--cluster", cluster, "--log-level", "warning",
                 "--metrics-port", str(metrics_port))
    # One hollow fleet, or several (prefixes h0, h1, …), each watching only its own nodes' assignments.
    prefixes = ["h"] if args.fleets == 1 else [f"h{k}" for k in range(args.fleets)]
    fleets = [daemon("agent", "--nats", nats.url, "--cluster", cluster, "--driver", "sim", "--count",
                     str(args.nodes // len(prefixes)), "--node-prefix", p, "--cpu", "64", "--memory", "64Gi",
                     "--log-level", "warning") for p in prefixes]
    out: dict[str, object] = {"nodes": args.nodes, "replicas": total, "services": args.services}
    peak = [0.0]

    async def sample_rss() -> None:
        while True:
            peak[0] = max(peak[0], rss_mib(ctl.pid))
            await asyncio.sleep(0.2)

    sampler = asyncio.get_running_loop().create_task(sample_rss())
    try:
        async with Api(nats.url, cluster) as api:
            api.timeout = 10.0 + total / 5000  # a busy controller at 100,000 replicas answers late
            t_reg = await api.wait(lambda: _nodes_ready(api, args.nodes), 120 + args.nodes / 20, "nodes registered",
                                   interval=0.5)
            out["register_s"] = round(t_reg, 2)
            await api.wait(lambda: api.call("leader"), 30, "a leader")
            leader0 = await api.call("leader")
            out["rss_idle_mib"] = round(rss_mib(ctl.pid), 1)

            spy = record(ctl.pid, f"{args.py_spy}.apply") if args.py_spy else None
            t0 = time.monotonic()
            for i in range(args.services):
                await api.call("apply", manifests=[manifest(f"s{i:03d}", args.replicas)], sources=[f"s{i}.yaml"])
            out["apply_calls_s"] = round(time.monotonic() - t0, 2)

            async def all_running() -> bool:
                running, desired = await totals(api)
                return desired == total and running == total

            try:
                await api.wait(all_running, args.timeout, f"{total} running", interval=0.25)
                out["all_running_s"] = round(time.monotonic() - t0, 2)
            except TimeoutError:
                out["all_running_s"] = None
                out["running_at_timeout"] = (await totals(api))[0]
            out["rss_peak_mib"] = round(peak[0], 1)
            stop_recording(spy)

            # The CLI against the big cluster: every row, fetched in pages.
            env = {**os.environ, "DROVER_NATS": nats.url, "DROVER_CLUSTER": cluster}
            cli = [("get_services", ["get", "services"]), ("get_containers", ["get", "containers"]),
                   ("get_containers_service", ["get", "containers", "--service", "s000"]),
                   ("get_nodes", ["get", "nodes"]), ("describe_service", ["describe", "service", "s000"]),
                   ("events_1000", ["events", "--limit", "1000"])]
            if args.cli_lean:  # (every container of 100,000 is a 100,000-line table: not what is measured then)
                cli = [c for c in cli if c[0] in ("get_services", "get_containers_service", "describe_service")]
            for label, cmd in [] if args.skip_cli else cli:
                c0 = time.perf_counter()
                proc = subprocess.run([str(VENV_BIN / "drover"), *cmd], env=env, capture_output=True, text=True)
                out[f"cli_{label}_s"] = round(time.perf_counter() - c0, 2)
                out[f"cli_{label}_lines"] = len(proc.stdout.splitlines()) if proc.returncode == 0 else proc.stderr[:200]

            # Heartbeat load at rest.
            spy = record(ctl.pid, f"{args.py_spy}.rest") if args.py_spy else None
            c0, w0 = cpu_seconds(ctl.pid), time.monotonic()
            m0 = metric(metrics_port, "drover_controller_assignments_written_total")
            p0 = metric(metrics_port, "drover_controller_reconcile_seconds_count")
            rtts: list[float] = []
            while time.monotonic() - w0 < args.heartbeat_seconds:
                r0 = time.perf_counter()
                await api.call("leader")
                rtts.append((time.perf_counter() - r0) * 1000)
                await asyncio.sleep(0.1)
            out["hb_cpu_share"] = round((cpu_seconds(ctl.pid) - c0) / (time.monotonic() - w0), 3)
            # At rest nothing should be planned or written (passes: the periodic full one, if due).
            out["rest_assignment_writes"] = metric(metrics_port, "drover_controller_assignments_written_total") - m0
            out["rest_passes"] = metric(metrics_port, "drover_controller_reconcile_seconds_count") - p0
            rest_start = datetime.fromtimestamp(time.time() - (time.monotonic() - w0), UTC)
            kinds: dict[str, int] = {}
            for ev in await api.call("events", limit=5000):
                if datetime.fromisoformat(ev["time"].replace("Z", "+00:00")) >= rest_start:
                    kinds[ev["kind"]] = kinds.get(ev["kind"], 0) + 1
            out["rest_events"] = kinds
            stop_recording(spy)
            rtts.sort()
            out["api_rtt_p50_ms"] = round(statistics.median(rtts), 2)
            out["api_rtt_p99_ms"] = round(rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))], 2)

            # Lose one node that runs replicas.
            nodes = await all_nodes(api)
            victim = max(nodes, key=lambda n: (len(n["containers"]) if isinstance(n["containers"], list)
                                               else n["containers"]))
            lost_n = victim["containers"] if isinstance(victim["containers"], int) else len(victim["containers"])
            out["lost_node_replicas"] = lost_n
            spy = record(ctl.pid, f"{args.py_spy}.lost") if args.py_spy else None
            t1, killed_at = time.monotonic(), time.time()
            prefix = victim["name"].rsplit("-", 1)[0]
            await api.nc.request(f"drover.{cluster}.fleet.{prefix}.die.{victim['name']}", b"", timeout=5)

            async def replaced() -> bool:
                row = (await api.call("get_nodes", name=victim["name"]))[0]
                running, _ = await totals(api)
                return row["containers"] == 0 and running == total

            try:
                # (polled every 0.1 s: a `get services` answer is counts kept by the controller, not a walk)
                await api.wait(replaced, 60, "replicas of the lost node replaced", interval=0.1)
                out["node_lost_replaced_s"] = round(time.monotonic() - t1, 2)
            except TimeoutError:
                out["node_lost_replaced_s"] = None
            # Where that time went: the pass that replaced the node's replicas posted its events when it was done.
            moved = [datetime.fromisoformat(ev["time"].replace("Z", "+00:00")).timestamp()
                     for ev in await api.call("events", limit=1000)
                     if ev["kind"] == "rescheduled" and ev.get("node") == victim["name"]]
            out["node_lost_planned_s"] = round(min(moved) - killed_at, 2) if moved else None
            stop_recording(spy)
            leader1 = await api.call("leader")
            out["lease_kept"] = leader0["id"] == leader1["id"] and leader0["term"] == leader1["term"]
            out["rss_end_mib"] = round(rss_mib(ctl.pid), 1)
            out["loop_lag_p99_ms"] = lag_p99_ms(metrics_port)
            out["fleet_rss_mib"] = round(sum(rss_mib(f.pid) for f in fleets), 1)
    except Exception as exc:  # a big run that fails half-way still reports what it measured
        out["failed"] = repr(exc)
    finally:
        sampler.cancel()
        for f in fleets:
            stop_daemon(f)
        stop_daemon(ctl)
        nats.stop()
    print(json.dumps(out))


def record(pid: int, out: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(VENV_BIN / "py-spy"), "record", "--pid", str(pid), "--format", "raw", "--threads",
                             "--nonblocking", "-o", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_recording(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


def lag_p99_ms(port: int) -> float | None:
    """The controller's event-loop lag p99 from its histogram (the upper bound of the bucket holding it)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    buckets = []
    for line in text.splitlines():
        if line.startswith("drover_controller_loop_lag_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(le), float(line.rsplit(" ", 1)[1])))
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    for le, count in buckets:
        if count >= 0.99 * total:
            return le * 1000
    return None


async def all_nodes(api: Api) -> list[dict[str, object]]:
    """Every node's row, page by page (5,000 rows with their containers are more than one NATS message)."""
    rows: list[dict[str, object]] = []
    after = None
    while True:
        got = await api.call("get_nodes", name=None, page=500, **({"after": after} if after else {}))
        rows += got
        if len(got) < 500:
            return rows
        after = [str(got[-1]["name"])]


async def _nodes_ready(api: Api, n: int) -> bool:
    rows = await all_nodes(api)
    return sum(1 for r in rows if r["status"] == "ready") >= n


if __name__ == "__main__":
    asyncio.run(main())
