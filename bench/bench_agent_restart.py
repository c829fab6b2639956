"""An agent killed alone: SIGKILL → its first heartbeat from the restarted process, against a running ``drover up``.

    DROVER_HOME=… .venv/bin/python bench/bench_agent_restart.py [--runs 7] [--node NAME]

``drover up`` restarts a dead agent about 1 s after it died; the node is lost when the controller hears
nothing for its node grace (3 s), so this figure must stay well under 3 s even on a loaded machine. The
bench reads ``drover up``'s ``lab.json`` and context (admin credentials) from ``$DROVER_HOME``, subscribes
to the node's heartbeat subject, SIGKILLs the agent and times the first heartbeat with a new ``boot_id``.
It also reports when the new process started (from ``lab.json``), so restart delay and the agent's own start
path can be told apart. It prints the median and max of ``--runs`` kills with the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import msgpack

from drover.shared import bus, hbwire
from drover.shared.subjects import Names


def _home() -> Path:
    return Path(os.environ.get("DROVER_HOME") or Path.home() / ".drover")


def _lab() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((_home() / "lab.json").read_text())
    return data


def _agent(lab: dict[str, Any], node: str | None) -> dict[str, Any]:
    agents = [p for p in lab["processes"] if p["kind"] == "agent" and (node is None or p.get("node") == node)]
    if not agents:
        raise SystemExit(f"no agent {node or ''} in {_home() / 'lab.json'}")
    return agents[0]


async def _new_pid(node: str, old: int, deadline: float) -> tuple[int, float]:
    """The restarted agent's pid and when ``drover up`` recorded it (lab.json is rewritten on every start)."""
    while time.time() < deadline:
        try:
            lab = _lab()
            pid = _agent(lab, node)["pid"]
            if pid and pid != old:
                return int(pid), float(lab["updated"])
        except (OSError, ValueError, KeyError):
            pass
        await asyncio.sleep(0.02)
    raise SystemExit("the agent was not restarted")


def _running(body: dict[str, Any]) -> int:
    """Running containers a heartbeat (one part) reports."""
    return sum(1 for e in hbwire.entries(body.get("cs") or msgpack.packb([]))
               if hbwire.decode_entry(e)["state"] == "running")


async def one_kill(nc: Any, names: Names, node: str) -> tuple[float, float, int, int]:
    """(kill → first heartbeat of the new boot, kill → new process recorded, running containers in the last
    heartbeat before the kill, in the first one after), times in seconds."""
    boots: list[tuple[str, float, int]] = []

    async def on_hb(msg: Any) -> None:
        body = msgpack.unpackb(msg.data)
        boots.append((str(body.get("boot_id")), time.time(), _running(body)))

    sub = await nc.subscribe(names.heartbeat(node), cb=on_hb)
    try:
        deadline = time.time() + 15
        while not boots and time.time() < deadline:  # the agent must be heard before it is killed
            await asyncio.sleep(0.02)
        if not boots:
            raise SystemExit(f"no heartbeat from {node}")
        old_boot, _, before = boots[-1]
        pid = _agent(_lab(), node)["pid"]
        killed = time.time()
        os.kill(pid, signal.SIGKILL)
        _, started = await _new_pid(node, pid, killed + 15)
        while time.time() < killed + 15:
            fresh = [(t, n) for b, t, n in boots if b != old_boot]
            if fresh:
                return fresh[0][0] - killed, started - killed, before, fresh[0][1]
            await asyncio.sleep(0.005)
        raise SystemExit("no heartbeat from the restarted agent within 15 s")
    finally:
        await sub.unsubscribe()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--node", default=None)
    ap.add_argument("--settle", type=float, default=4.0, help="seconds between kills (the node at rest again)")
    args = ap.parse_args()
    lab = _lab()
    ctx = json.loads((_home() / "context.json").read_text())
    node = _agent(lab, args.node)["node"]
    names = Names(lab["cluster"])
    nc = await bus.connect(ctx["nats"], name="bench-agent-restart", creds=ctx.get("creds"), ca=ctx.get("ca"))
    heard, restarted, loads = [], [], []
    try:
        for i in range(args.runs):
            hb, start, before, after = await one_kill(nc, names, node)
            heard.append(hb)
            restarted.append(start)
            loads.append(os.getloadavg()[0])
            print(f"run {i + 1}: kill → restarted {start:.2f} s, → first heartbeat {hb:.2f} s (load {loads[-1]:.2f}; "
                  f"running containers reported before/after: {before}/{after})", flush=True)
            await asyncio.sleep(args.settle)
    finally:
        await nc.close()
    print(json.dumps({
        "runs": args.runs,
        "kill_to_heartbeat_median_s": round(statistics.median(heard), 2),
        "kill_to_heartbeat_max_s": round(max(heard), 2),
        "restart_to_heartbeat_median_s": round(statistics.median(h - s for h, s in zip(heard, restarted, strict=True)),
                                               2),
        "load_avg_1m": [round(min(loads), 2), round(max(loads), 2)],
    }))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
