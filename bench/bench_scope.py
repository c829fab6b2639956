"""The pure plan on a big converged cluster: a full pass against a pass over what changed (``controller/scope.py``).

    .venv/bin/python bench/bench_scope.py [--nodes 1000 --services 100 --replicas 100]

A cluster of NODES nodes running SERVICES services of REPLICAS replicas each, every replica reported running and
ready. Timed, in one process (median of 5): a full pass with nothing to do (what the controller's safety-net
resync costs); a full pass and a scoped pass after one service is scaled up by 10 (the scoped one plans that
service only); a scoped pass after one node is lost (its services and the node). Each scoped plan is checked
against the full plan of the same snapshot. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable

from drover.controller.reconcile import ClusterPlan, plan
from drover.controller.scope import Scope, allocation_of, difference, placements_of
from drover.controller.snapshot import NodeState, Snapshot
from drover.shared.models import (
    AssignedContainer,
    Assignment,
    ContainerState,
    ContainerStatus,
    NodeControl,
    NodeRegistration,
    Resources,
    ServiceRecord,
    spec_of,
)

NOW = 10_000.0


def cluster(nodes: int, services: int, replicas: int) -> Snapshot:
    names = [f"h-{i}" for i in range(1, nodes + 1)]
    spec = spec_of({"image": "x", "resources": {"cpu": 0.01, "memory": 8 << 20}})
    svcs = {f"s{i:03d}": ServiceRecord(name=f"s{i:03d}", spec=spec.stored, replicas=replicas, revision=1, updated=0.0,
                                       rollout_state="complete") for i in range(services)}
    state = {n: NodeState(reg=NodeRegistration(name=n, capacity=Resources(cpu=64, memory=64 << 30)),
                          ctl=NodeControl(), last_heartbeat=NOW, seen_since=0.0) for n in names}
    work: dict[str, list[AssignedContainer]] = {n: [] for n in names}
    k = 0
    ready_since = {}
    for s in svcs:
        for _ in range(replicas):
            rid = f"{k:010x}"
            node = names[k % nodes]
            k += 1
            work[node].append(AssignedContainer(id=rid, service=s, revision=1, spec=spec))
            state[node].observed[rid] = ContainerStatus(id=rid, service=s, revision=1, state=ContainerState.RUNNING,
                                                        ready=True, container_id="c" + rid, started_at=1.0)
            ready_since[rid] = 1.0
    assignments = {n: Assignment(node=n, containers=c) for n, c in work.items()}
    return Snapshot(now=NOW, node_grace=3.0, services=svcs, nodes=state, assignments=assignments,
                    ready_since=ready_since, placements=placements_of(assignments),
                    allocations={n: allocation_of(a.containers) for n, a in assignments.items()})


def timed(f: Callable[[], ClusterPlan]) -> tuple[float, ClusterPlan]:
    times, p = [], None
    for _ in range(5):
        t0 = time.perf_counter()
        p = f()
        times.append(time.perf_counter() - t0)
    assert p is not None
    return round(statistics.median(times) * 1000, 1), p


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--services", type=int, default=100)
    ap.add_argument("--replicas", type=int, default=100)
    a = ap.parse_args()
    snap = cluster(a.nodes, a.services, a.replicas)
    out: dict[str, object] = {"nodes": a.nodes, "replicas": a.services * a.replicas}
    out["full_idle_ms"], idle = timed(lambda: plan(snap, random.Random(1)))
    assert idle.empty
    out["scoped_idle_ms"], _ = timed(lambda: plan(snap, random.Random(1), Scope()))
    svc = snap.services["s000"]
    snap.services["s000"] = svc.model_copy(update={"replicas": svc.replicas + 10})
    out["full_scale_one_ms"], full = timed(lambda: plan(snap, random.Random(1)))
    out["scoped_scale_one_ms"], scoped = timed(lambda: plan(snap, random.Random(1), Scope(frozenset({"s000"}))))
    assert difference(scoped, full) is None and len(full.events) == 10
    snap.services["s000"] = svc
    snap.nodes["h-1"].last_heartbeat = NOW - 10
    out["full_node_lost_ms"], full = timed(lambda: plan(snap, random.Random(1)))
    out["scoped_node_lost_ms"], scoped = timed(lambda: plan(snap, random.Random(1), Scope(nodes=frozenset({"h-1"}))))
    assert difference(scoped, full) is None and full.events
    print(json.dumps(out))


if __name__ == "__main__":
    main()
