"""A chaos run with every fault kind against a fresh `drover up --nats-servers 3 --agents 3` lab: number of
faults, recovery time after each fault kind (median, max), requests ok/failed, invariants.

    .venv/bin/python bench/bench_chaos.py [--duration 10m] [--seed 1]

Target (issue 11): 0 lost, 0 duplicates, recovery <= 10 s for every fault, >= 99.9 % of requests ok.
Everything runs on 127.0.0.0/8 against the local Docker engine (needs root for iptables).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from drover.chaos.report import recovery_by_kind, report_json, summary
from drover.chaos.runner import ChaosOptions, Run, load_state
from drover.chaos.schedule import KINDS
from drover.cli.context import resolve
from drover.shared.units import parse_duration


def start_lab(home: Path, cluster: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "DROVER_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "drover", "up", "--nats-port", "0", "--data-dir", str(home / "data"), "--cluster",
         cluster, "--nats-servers", "3", "--agents", "3", "--no-metrics"],
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
    return {"report": report_json(seed, duration, out.faults, out.checks), "by_kind": recovery_by_kind(out.faults)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", default="10m")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    cluster = f"bench{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix="drover-chaos-bench-") as tmp:
        home = Path(tmp)
        proc, url = start_lab(home, cluster)
        try:
            result = asyncio.run(chaos(home, url, cluster, float(parse_duration(args.duration)), args.seed))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
