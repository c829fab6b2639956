"""The chaos run's slowest chain: the leading controller SIGKILLed a moment (``--gap``, 2.6 s by default)
after one nats-server of three, so the restarted controller opens its store while the killed server's
streams elect new leaders. Per trial: the time from the controller kill until a controller answers an API
read again, and until the cluster is converged again (every node ready, every service available: what
``drover chaos`` counts as recovered).

    .venv/bin/python bench/bench_chain.py [--trials 4] [--gap 2.6] [--seed 1]

Runs against a fresh `drover up --nats-servers 3 --agents 3` lab on 127.0.0.0/8 and the local Docker engine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench_chaos import start_lab
from common import compile_bytecode

from drover.chaos.inject import _nats_healthz
from drover.chaos.probe import observe
from drover.chaos.runner import SERVICE, free_port_on, load_state, manifest
from drover.cli.client import Client
from drover.cli.context import resolve

POLL = 0.1  # s between probes after the kill


async def converged(c: Client) -> bool:
    nodes = await c.call("get_nodes", {"name": None}, timeout=1.0)
    services = await c.call("get_services", {"name": None}, timeout=1.0)
    return observe(0.0, nodes, services).converged


async def leader(c: Client) -> str | None:
    data = await c.call_new_verb("leader", {}, "leader", timeout=2.0)
    ident = (data or {}).get("id")
    return str(ident) if ident else None


async def wait(pred: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if await pred():
                return
        except Exception:
            pass
        await asyncio.sleep(0.3)
    raise SystemExit(f"timed out waiting for {what}")


async def trial(c: Client, state: Any, rng: random.Random, gap: float) -> dict[str, Any]:
    await wait(lambda: converged(c), 120, "convergence before the trial")
    procs = lambda kind: [p for p in state()["processes"] if p["kind"] == kind]  # noqa: E731

    async def all_current() -> bool:
        return all(await asyncio.gather(*(_nats_healthz(p) for p in procs("nats"))))

    await wait(all_current, 120, "every nats-server current")
    await asyncio.sleep(3.0)  # let the restarted server's streams settle as in a chaos run's quiet gap
    ident = await leader(c)
    [ctl] = [p for p in procs("controller") if p.get("id") == ident]
    victim = rng.choice(procs("nats"))
    os.kill(int(victim["pid"]), signal.SIGKILL)
    await asyncio.sleep(gap)
    os.kill(int(ctl["pid"]), signal.SIGKILL)
    killed = time.monotonic()
    print(f"controller killed at {time.time():.2f} (unix), nats-server {victim['name']} {gap:g} s before", flush=True)
    answered = None
    while time.monotonic() - killed < 60:
        try:
            ok = await converged(c)
            if answered is None:
                answered = time.monotonic() - killed
            if ok:
                break
        except Exception:
            pass
        await asyncio.sleep(POLL)
    done = time.monotonic() - killed
    return {"nats": victim["name"], "answered_s": round(answered or -1, 2), "converged_s": round(done, 2),
            "load_1m": round(os.getloadavg()[0], 2)}


async def run(home: Path, url: str, cluster: str, trials: int, gap: float, seed: int) -> list[dict[str, Any]]:
    os.environ["DROVER_HOME"] = str(home)
    state = load_state(home / "lab.json", cluster)
    rng = random.Random(seed)
    out = []
    async with Client(resolve(url, cluster), keep_reconnecting=True) as c:
        from drover.shared.manifest import parse_manifests

        agents = [p for p in state()["processes"] if p["kind"] == "agent"]
        port = free_port_on([str(a["address"]) for a in agents])
        [m] = parse_manifests([("chain", manifest(port, 3, "chain", "local/busybox:latest"))])
        await c.call("apply", {"manifests": [m.model_dump(mode="json")], "sources": ["chain"]}, timeout=10.0)
        for i in range(trials):
            r = await trial(c, state, rng, gap)
            print(f"trial {i + 1}: {json.dumps(r)}", flush=True)
            out.append(r)
        await c.call("delete", {"names": [SERVICE]}, timeout=10.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--gap", type=float, default=2.6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--log-level", default="warning", help="the lab daemons' (info: their start-up steps)")
    ap.add_argument("--logs", type=Path, help="copy the lab's logs here at the end")
    args = ap.parse_args()
    compile_bytecode()  # as an installed drover has it: a restarted daemon does not recompile drover's sources
    cluster = f"chain{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix="drover-chain-bench-") as tmp:
        home = Path(tmp)
        proc, url = start_lab(home, cluster, "--log-level", args.log_level)
        try:
            results = asyncio.run(run(home, url, cluster, args.trials, args.gap, args.seed))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
            if args.logs:
                shutil.copytree(home / "data" / "logs", args.logs, dirs_exist_ok=True)
    answered = [r["answered_s"] for r in results]
    conv = [r["converged_s"] for r in results]
    print(json.dumps({
        "trials": results, "gap_s": args.gap,
        "answered_s": {"median": statistics.median(answered), "max": max(answered)},
        "converged_s": {"median": statistics.median(conv), "max": max(conv)},
    }, indent=2))


if __name__ == "__main__":
    main()
