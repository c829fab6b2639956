"""The controller's heartbeat intake, in process (no NATS): the cost per heartbeat message of
``controller/heartbeats.py`` feeding a real ``ClusterState``, for the record format older agents send and the
parts format of this version.

    .venv/bin/python bench/bench_hb_intake.py [--nodes 1000] [--replicas 10] [--rounds 5]

Cases: 1,000 nodes with 10 replicas each, every heartbeat unchanged (the steady state at 1 Hz) and every
heartbeat with one container changed; one node with 10,000 replicas, unchanged and with one container
changed. Prints one JSON line (microseconds per heartbeat, or per whole heartbeat of all its parts).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from drover.controller.heartbeats import HeartbeatIntake
from drover.controller.state import ClusterState
from drover.shared import hbwire, wire
from drover.shared.models import ContainerState, ContainerStatus, NodeRegistration


def statuses(node: str, n: int, restarts: int = 0) -> list[dict[str, Any]]:
    return [
        ContainerStatus(
            id=f"r1-{node}-{i}", container_id=f"{i:064x}", name=f"drover-web-r1-{node}-{i}", service="web", revision=1,
            state=ContainerState.RUNNING, ready=True, restarts=restarts if i == 0 else 0, host_port=20000 + i,
            ports={"http": 20000 + i}, started_at=1.7e9,
        ).model_dump(mode="json")
        for i in range(n)
    ]


def messages(node: str, sts: list[dict[str, Any]], seq: int, fmt: str) -> list[bytes]:
    head = {"node": node, "boot_id": "b" * 32, "seq": seq, "time": time.time(), "generation": 1, "service_rps": {}}
    if fmt == "record":
        return [wire.encode({**head, "containers": sts})]
    return hbwire.encode(head, sts, hbwire.PART_MAX)


def run(nodes: int, replicas: int, rounds: int, fmt: str, change: bool) -> float:
    state = ClusterState(started=0.0, node_grace=1e9)
    names = [f"n{i}" for i in range(nodes)]
    for n in names:
        state.set_registration(NodeRegistration(name=n), n, 0.0)
    intake = HeartbeatIntake(state.touch, state.on_heartbeat)
    # every round's messages prepared first: only the intake is timed
    plan = [[(n, messages(n, statuses(n, replicas, restarts=r if change else 0), r + 1, fmt)) for n in names]
            for r in range(rounds + 1)]
    for n, msgs in plan[0]:
        for m in msgs:
            intake.feed(n, m, time.time())
    t0 = time.perf_counter()
    for batch in plan[1:]:
        now = time.time()
        for n, msgs in batch:
            for m in msgs:
                intake.feed(n, m, now)
    return (time.perf_counter() - t0) / (rounds * nodes) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--replicas", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    out: dict[str, Any] = {"loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    for fmt in ("record", "parts"):
        for change in (False, True):
            key = f"{fmt}_{'one_changed' if change else 'unchanged'}"
            many = run(args.nodes, args.replicas, args.rounds, fmt, change)
            out[f"{args.nodes}x{args.replicas}_{key}_us"] = round(many, 1)
            out[f"1x10000_{key}_us"] = round(run(1, 10_000, 3, fmt, change), 1)
    out["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
