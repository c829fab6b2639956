"""The chaos run's slowest chains, where a controller comes back while the streams of a just-killed
nats-server elect new leaders (nats-server's raft: a follower waits a random 4-9 s for a lost leader):
- ``--chain kill`` (default): the leading controller SIGKILLed ``--gap`` s (2.6 by default) after one
  nats-server of three, so the restarted controller opens its store during the elections;
- ``--chain pause``: the leading controller SIGSTOPped, one nats-server SIGKILLed ``--gap`` s later and the
  controller SIGCONTed ``--hold`` s after the stop (the 10-minute run's 172.9 s chain: a 6.6 s pause with a
  nats-kill 4.74 s into it).
Per trial, from the controller's kill (or continue): the time until a controller answers an API read again,
until the cluster is converged again (every node ready, every service available: what ``drover chaos``
counts as recovered), and until every stream has a leader again and JetStream a meta leader (the
elections' end: each answers its info request), so that what drover adds after the last election shows.

    .venv/bin/python bench/bench_chain.py [--chain kill|pause] [--trials 4] [--gap 2.6] [--hold 6.6] [--seed 1]

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
from drover.shared.subjects import Names

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


async def elected(c: Client, cluster: str) -> bool:
    """Every drover stream of the cluster has a leader and JetStream a meta leader: each answers its info
    request (only a stream's leader answers its info; only the meta leader the account's)."""
    names = Names(cluster)
    buckets = [names.services_bucket, names.assignments_bucket, names.nodes_bucket, names.nodectl_bucket,
               names.leader_bucket, names.config_bucket, names.secrets_bucket, names.requests_bucket]
    subjects = [f"$JS.API.STREAM.INFO.KV_{b}" for b in buckets]
    subjects += [f"$JS.API.STREAM.INFO.{names.events_stream}", "$JS.API.INFO"]

    async def ask(subject: str) -> bool:
        try:
            reply = await c.nc.request(subject, b"", timeout=0.5)
        except Exception:
            return False
        return b'"error"' not in reply.data

    return all(await asyncio.gather(*(ask(s) for s in subjects)))


async def trial(
    c: Client, state: Any, rng: random.Random, gap: float, chain: str, hold: float, cluster: str,
) -> dict[str, Any]:
    await wait(lambda: converged(c), 120, "convergence before the trial")
    procs = lambda kind: [p for p in state()["processes"] if p["kind"] == kind]  # noqa: E731

    async def all_current() -> bool:
        return all(await asyncio.gather(*(_nats_healthz(p) for p in procs("nats"))))

    await wait(all_current, 120, "every nats-server current")
    await asyncio.sleep(3.0)  # let the restarted server's streams settle as in a chaos run's quiet gap
    ident = await leader(c)
    [ctl] = [p for p in procs("controller") if p.get("id") == ident]
    victim = rng.choice(procs("nats"))
    if chain == "pause":
        os.kill(int(ctl["pid"]), signal.SIGSTOP)
        try:
            await asyncio.sleep(gap)
            os.kill(int(victim["pid"]), signal.SIGKILL)
            nats_killed = time.monotonic()
            await asyncio.sleep(max(0.0, hold - gap))
        finally:
            os.kill(int(ctl["pid"]), signal.SIGCONT)
        what = "continued"
    else:
        os.kill(int(victim["pid"]), signal.SIGKILL)
        nats_killed = time.monotonic()
        await asyncio.sleep(gap)
        os.kill(int(ctl["pid"]), signal.SIGKILL)
        what = "killed"
    began = time.monotonic()
    print(f"controller {what} at {time.time():.2f} (unix), nats-server {victim['name']} killed "
          f"{began - nats_killed:.2f} s before", flush=True)
    answered = led = done = None

    async def watch_elections() -> None:
        nonlocal led
        while time.monotonic() - began < 60:
            if await elected(c, cluster):
                led = time.monotonic() - began
                return
            await asyncio.sleep(POLL)

    elections = asyncio.ensure_future(watch_elections())
    while time.monotonic() - began < 60:
        try:
            ok = await converged(c)
            if answered is None:
                answered = time.monotonic() - began
            if ok:
                done = time.monotonic() - began
                break
        except Exception:
            pass
        await asyncio.sleep(POLL)
    await elections
    done = done if done is not None else time.monotonic() - began
    return {"nats": victim["name"], "answered_s": round(answered or -1, 2), "converged_s": round(done, 2),
            "elected_s": round(led if led is not None else -1, 2),
            "after_elections_s": round(done - (led or 0.0), 2),
            "nats_kill_to_converged_s": round(done + began - nats_killed, 2),
            "load_1m": round(os.getloadavg()[0], 2)}


async def run(
    home: Path, url: str, cluster: str, trials: int, gap: float, seed: int, chain: str, hold: float,
) -> list[dict[str, Any]]:
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
            r = await trial(c, state, rng, gap, chain, hold, cluster)
            print(f"trial {i + 1}: {json.dumps(r)}", flush=True)
            out.append(r)
        await c.call("delete", {"names": [SERVICE]}, timeout=10.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--chain", choices=("kill", "pause"), default="kill")
    ap.add_argument("--gap", type=float, default=None, help="s from the first fault to the second "
                    "(kill: nats-server then controller, 2.6; pause: controller stop then nats-server, 4.74)")
    ap.add_argument("--hold", type=float, default=6.6, help="pause: s from the stop to the continue")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--log-level", default="warning", help="the lab daemons' (info: their start-up steps)")
    ap.add_argument("--logs", type=Path, help="copy the lab's logs here at the end")
    args = ap.parse_args()
    if args.gap is None:
        args.gap = 2.6 if args.chain == "kill" else 4.74
    compile_bytecode()  # as an installed drover has it: a restarted daemon does not recompile drover's sources
    cluster = f"chain{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix="drover-chain-bench-") as tmp:
        home = Path(tmp)
        proc, url = start_lab(home, cluster, "--log-level", args.log_level)
        try:
            results = asyncio.run(run(home, url, cluster, args.trials, args.gap, args.seed, args.chain, args.hold))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
            if args.logs:
                shutil.copytree(home / "data" / "logs", args.logs, dirs_exist_ok=True)
    answered = [r["answered_s"] for r in results]
    conv = [r["converged_s"] for r in results]
    print(json.dumps({
        "trials": results, "chain": args.chain, "gap_s": args.gap, "hold_s": args.hold,
        "answered_s": {"median": statistics.median(answered), "max": max(answered)},
        "converged_s": {"median": statistics.median(conv), "max": max(conv)},
    }, indent=2))


if __name__ == "__main__":
    main()
