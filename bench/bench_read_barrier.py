"""A controller resumed from a pause: how long its first read takes, and whether it is current.

    .venv/bin/python bench/bench_read_barrier.py [--rounds 10] [--writes 300] [--pause 1.5]

One real controller on a throw-away nats-server. Each round: SIGSTOP the controller, write ``--writes``
services to the services bucket (as another controller would), queue a ``get_services`` request behind them
in its socket, keep it stopped ``--pause`` seconds (past its 1 s stall threshold), SIGCONT; then time the reply
from the SIGCONT and check it lists every service written in the pause. Without the read barrier the reply
came from the state before the pause; with it the reply is current, or ``unavailable`` when the controller
could not prove that within 2 s. Prints the median and max time to the reply, the count of stale and of
unavailable replies, and the load average.
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
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Nats, compile_bytecode, daemon, stop_daemon

from drover.shared import bus, wire
from drover.shared.manifest import parse_manifests
from drover.shared.models import ApiReply, ServiceRecord, spec_of
from drover.shared.subjects import Names


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--writes", type=int, default=300)
    ap.add_argument("--pause", type=float, default=1.5)
    args = ap.parse_args()
    compile_bytecode()
    nats = Nats()
    cluster = f"rb{uuid.uuid4().hex[:6]}"
    names = Names(cluster)
    ctl = daemon("controller", "--nats", nats.url, "--cluster", cluster)
    nc = await bus.connect(nats.url, name="bench")
    try:
        store = await bus.open_store(nc, cluster)
        deadline = time.monotonic() + 60
        while True:  # the controller answers
            try:
                msg = await nc.request(names.api("get_services"), wire.encode({"name": None}), timeout=2)
                if ApiReply.from_wire(msg.data).ok:
                    break
            except Exception:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)
        doc = {"apiVersion": "drover/v1", "kind": "Service", "metadata": {"name": "t"},
               "spec": {"image": "local/busybox:latest", "replicas": 0}}
        [m] = parse_manifests([("bench", json.dumps(doc))])
        template = ServiceRecord(name="t", spec=spec_of(m.spec), replicas=0)
        latencies, stale, unavailable, loads = [], 0, 0, []
        for r in range(args.rounds):
            batch = [f"s{r}-{i}" for i in range(args.writes)]
            os.kill(ctl.pid, signal.SIGSTOP)
            stopped = time.monotonic()
            try:
                for name in batch:
                    await store.services.put(name, template.model_copy(update={"name": name}).to_wire())
                inbox = nc.new_inbox()
                sub = await nc.subscribe(inbox)
                await nc.publish(names.api("get_services"), wire.encode({"name": None}), reply=inbox)
                await nc.flush()
                await asyncio.sleep(max(0.0, args.pause - (time.monotonic() - stopped)))
            finally:
                os.kill(ctl.pid, signal.SIGCONT)
            resumed = time.monotonic()
            reply = ApiReply.from_wire((await sub.next_msg(timeout=15)).data)
            latencies.append(time.monotonic() - resumed)
            await sub.unsubscribe()
            loads.append(os.getloadavg()[0])
            if not reply.ok:
                unavailable += reply.code == "unavailable"
                outcome = reply.code
            else:
                missing = set(batch) - {row["name"] for row in reply.data}
                stale += bool(missing)
                outcome = f"stale ({len(missing)} missing)" if missing else "current"
            print(f"round {r + 1}: reply {latencies[-1] * 1000:.0f} ms after SIGCONT: {outcome} "
                  f"(load {loads[-1]:.2f})", flush=True)
            await asyncio.sleep(0.5)
        print(json.dumps({
            "rounds": args.rounds, "writes_in_pause": args.writes,
            "reply_after_resume_median_ms": round(statistics.median(latencies) * 1000),
            "reply_after_resume_max_ms": round(max(latencies) * 1000),
            "stale": stale, "unavailable": unavailable,
            "load_avg_1m": [round(min(loads), 2), round(max(loads), 2)],
        }))
    finally:
        await nc.close()
        stop_daemon(ctl)
        nats.stop()


if __name__ == "__main__":
    asyncio.run(main())
