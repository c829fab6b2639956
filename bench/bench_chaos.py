"""A chaos run with every fault kind against a fresh `drover up --nats-servers 3 --agents 3` lab: number of
faults, recovery time after each fault kind (median, max), requests ok/failed, invariants.

    .venv/bin/python bench/bench_chaos.py [--duration 10m] [--seed 1] [--log-level info --logs DIR]

Target (issue 11): 0 lost, 0 duplicates, recovery <= 10 s for every fault, >= 99.9 % of requests ok.
Everything runs on 127.0.0.0/8 against the local Docker engine (needs root for iptables).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from drover.chaos.report import chain_summary, recovery_by_kind, report_json, summary
from drover.chaos.runner import ChaosOptions, Run, load_state
from drover.chaos.schedule import KINDS
from drover.cli.context import resolve
from drover.shared.units import parse_duration

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compile_bytecode


def start_lab(home: Path, cluster: str, *extra: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "DROVER_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "drover", "up", "--nats-port", "0", "--data-dir", str(home / "data"), "--cluster",
         cluster, "--nats-servers", "3", "--agents", "3", "--no-metrics", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "ready" in line:
            return proc, next(w for w in line.split() if w.startswith("nats://"))
    proc.kill()
    raise SystemExit("drover up did not get ready")


async def chaos(home: Path, url: str, cluster: str, duration: float, seed: int) -> dict[str, object]:
    import aiodocker

    os.environ["DROVER_HOME"] = str(home)
    opts = ChaosOptions(duration=duration, seed=seed, kinds=list(KINDS), interval=5.0)
    docker = aiodocker.Docker()
    try:
        target = resolve(url, cluster)  # creds and CA from the context drover up wrote
        out = await Run(opts, target, load_state(home / "lab.json", cluster)).run(docker)
    finally:
        await docker.close()
    print("\n".join(summary(seed, duration, out.faults, out.checks, out.notes)))
    return {"report": report_json(seed, duration, out.faults, out.checks), "by_kind": recovery_by_kind(out.faults),
            "chains": chain_summary(out.faults)}


class LoadSampler:
    """The 1-minute load average every 10 s while the run goes (the machine may be shared)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(10.0):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self.samples.append(os.getloadavg()[0])
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict[str, float]:
        return {"min": min(self.samples), "mean": round(statistics.mean(self.samples), 2), "max": max(self.samples)}


def markdown(result: dict[str, Any], load: dict[str, float], started: str) -> str:
    """The rows for docs/BENCHMARKS.md."""
    report, by_kind = result["report"], result["by_kind"]
    checks = report["checks"]
    ok, failed = checks["requests_ok"], checks["requests_failed"]
    share = 100.0 * ok / (ok + failed) if ok + failed else 100.0
    lines = [
        "| date | duration | faults | lost | duplicates | unconverged | converged after the last fault "
        "| requests ok / failed | load average (1 min: min / mean / max) | passed |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {started} | {report['duration_s']:.0f} s | {len(report['faults'])} | {len(checks['desired_state_lost'])} "
        f"| {len(checks['duplicate_replicas'])} | {len(checks['unconverged_services'])} | {checks['max_converge_s']} s "
        f"| {ok:,} / {failed:,} ({share:.2f} %) | {load['min']:.1f} / {load['mean']:.1f} / {load['max']:.1f} "
        f"| {'yes' if report['passed'] else 'no'} |",
        "",
        "| fault | count | recovery median | recovery max | overlapped by another fault | max of the others |",
        "|---|---|---|---|---|---|",
    ]
    for kind, r in by_kind.items():
        lines.append(
            f"| {kind} | {r['count']} | {_s(r['median_s'])} | {_s(r['max_s'])} | {r['overlapped']} "
            f"| {_s(r['max_alone_s'])} |"
        )
    c = result["chains"]
    lines += [
        "",
        f"Chains of overlapping faults (each began before the cluster had recovered from the ones before): "
        f"{c['of_several_faults']}, faults back to back for up to {c['longest_span_s']:.1f} s; from each chain's "
        f"last fault (or a fault alone) to convergence: max {_s(c['max_after_last_fault_s'])}.",
    ]
    return "\n".join(lines)


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} s"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", default="10m")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--log-level", default=None, help="the lab daemons' (info: their steps, for a slow recovery)")
    ap.add_argument("--logs", type=Path, help="copy the lab's logs here at the end")
    args = ap.parse_args()
    # Restarted daemons load drover's bytecode as an installed package would, not recompiled sources (this
    # machine sets PYTHONDONTWRITEBYTECODE): an agent's start is on the node grace's clock.
    compile_bytecode()
    cluster = f"bench{uuid.uuid4().hex[:6]}"
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="drover-chaos-bench-") as tmp:
        home = Path(tmp)
        proc, url = start_lab(home, cluster, *(["--log-level", args.log_level] if args.log_level else []))
        try:
            with LoadSampler() as load:
                result = asyncio.run(chaos(home, url, cluster, float(parse_duration(args.duration)), args.seed))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
            if args.logs:
                shutil.copytree(home / "data" / "logs", args.logs, dirs_exist_ok=True)
    result["load_average_1m"] = load.summary()
    print(json.dumps(result, indent=2))
    print(markdown(result, load.summary(), started))


if __name__ == "__main__":
    main()
