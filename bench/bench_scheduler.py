"""Scheduler benchmark: the naive scan against `drover.controller.scheduler.place`.

10,000 replicas onto 1,000 synthetic nodes (mixed capacities, a 3-zone label, some nodes
cordoned, one constraint and a zone spread), placed two ways: one request with count=10,000
and 100 requests of 100 (`place_many`). For each, prints placements/s of the naive baseline
(every node filtered and scored for every replica, written plainly below) and of the real
scheduler, and their ratio; asserts that both plans are valid (never over-committed,
constraints and cordons respected) and place the same number of replicas in each zone.

Run: .venv/bin/python bench/bench_scheduler.py
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Sequence

from drover.controller.scheduler import (
    NodeView,
    PlacementRequest,
    Plan,
    parse_constraint,
    place,
    place_many,
)
from drover.controller.scheduler.model import load_fraction

GIB = 1 << 30
N_NODES = 1000
REPLICAS = 10_000


def synthetic_nodes(n: int, seed: int) -> list[NodeView]:
    rng = random.Random(seed)
    nodes = []
    for i in range(n):
        cpu = rng.choice([2.0, 4.0, 8.0, 16.0, 32.0])
        mem = rng.choice([4, 8, 16, 32, 64]) * GIB
        nodes.append(
            NodeView(
                name=f"node-{i:04d}",
                labels={"zone": rng.choice("abc"), "tier": "batch" if rng.random() < 0.2 else "web"},
                cpu_capacity=cpu,
                mem_capacity=mem,
                cpu_allocated=round(cpu * rng.uniform(0.0, 0.5), 2),
                mem_allocated=int(mem * rng.uniform(0.0, 0.5)),
                schedulable=rng.random() >= 0.05,
                service_counts={},
            )
        )
    return nodes


def requests(count: int, pieces: int) -> list[PlacementRequest]:
    return [
        PlacementRequest(
            service=f"svc-{k}" if pieces > 1 else "web",
            count=count // pieces,
            cpu=0.25,
            memory=256 * 1024 * 1024,
            constraints=("node.labels.tier != batch",),
            spread="node.labels.zone",
        )
        for k in range(pieces)
    ]


# --------------------------------------------------------------------------- naive baseline
def naive_place_many(nodes: Sequence[NodeView], reqs: Sequence[PlacementRequest], rng: random.Random) -> list[Plan]:
    """Filter and score every node for every replica. Same ordering rules and tie-break
    draws as the scheduler (spread domain count, replicas on node, load after placing,
    one rng.random() per node per request), so the two must agree."""
    cpu_alloc = {n.name: n.cpu_allocated for n in nodes}
    mem_alloc = {n.name: n.mem_allocated for n in nodes}
    counts: dict[str, dict[str, int]] = {}
    plans = []
    for req in reqs:
        constraints = [parse_constraint(t) for t in req.constraints]
        tiebreak = {n.name: rng.random() for n in nodes}
        on_node = counts.setdefault(req.service, {n.name: n.service_counts.get(req.service, 0) for n in nodes})

        def domain(n: NodeView, spread: str | None = req.spread) -> str:
            if spread is None:
                return ""
            if spread == "node.name":
                return n.name
            return n.labels.get(spread.removeprefix("node.labels."), "")

        in_domain: dict[str, int] = {}
        for n in nodes:
            in_domain[domain(n)] = in_domain.get(domain(n), 0) + on_node[n.name]
        placed = []
        for index in range(req.count):
            best: tuple[int, int, float, float, int] | None = None
            best_node = None
            for pos, n in enumerate(nodes):
                if not n.schedulable or n.name in req.avoid_nodes:
                    continue
                if not all(c.matches(n.name, n.labels) for c in constraints):
                    continue
                if req.cpu > 0 and cpu_alloc[n.name] + req.cpu > n.cpu_capacity:
                    continue
                if req.memory > 0 and mem_alloc[n.name] + req.memory > n.mem_capacity:
                    continue
                load = load_fraction(
                    cpu_alloc[n.name] + req.cpu, n.cpu_capacity, mem_alloc[n.name] + req.memory, n.mem_capacity
                )
                key = (in_domain[domain(n)], on_node[n.name], load, tiebreak[n.name], pos)
                if best is None or key < best:
                    best, best_node = key, n
            if best_node is None:
                break
            cpu_alloc[best_node.name] += req.cpu
            mem_alloc[best_node.name] += req.memory
            on_node[best_node.name] += 1
            in_domain[domain(best_node)] += 1
            placed.append((best_node.name, index))
        plans.append(_plan(placed, req.count))
    return plans


def _plan(placed: list[tuple[str, int]], count: int) -> Plan:
    from drover.controller.scheduler import Placement

    return Plan(tuple(Placement(n, i) for n, i in placed), count - len(placed), {})


# --------------------------------------------------------------------------- checks
def check_valid(nodes: Sequence[NodeView], reqs: Sequence[PlacementRequest], plans: Sequence[Plan]) -> None:
    by_name = {n.name: n for n in nodes}
    cpu = {n.name: n.cpu_allocated for n in nodes}
    mem = {n.name: n.mem_allocated for n in nodes}
    for req, plan in zip(reqs, plans, strict=True):
        constraints = [parse_constraint(t) for t in req.constraints]
        assert len(plan.placements) + plan.unplaced == req.count
        assert [p.index for p in plan.placements] == list(range(len(plan.placements)))
        for p in plan.placements:
            n = by_name[p.node]
            assert n.schedulable, f"{p.node} is cordoned"
            assert all(c.matches(n.name, n.labels) for c in constraints), f"{p.node} violates a constraint"
            cpu[p.node] += req.cpu
            mem[p.node] += req.memory
    for n in nodes:
        assert cpu[n.name] <= n.cpu_capacity + 1e-9, f"{n.name} cpu over-committed"
        assert mem[n.name] <= n.mem_capacity, f"{n.name} memory over-committed"


def per_zone(nodes: Sequence[NodeView], plans: Sequence[Plan]) -> dict[str, int]:
    zone = {n.name: n.labels.get("zone", "") for n in nodes}
    out: dict[str, int] = {}
    for plan in plans:
        for p in plan.placements:
            out[zone[p.node]] = out.get(zone[p.node], 0) + 1
    return dict(sorted(out.items()))


def run(label: str, nodes: list[NodeView], reqs: list[PlacementRequest], seed: int) -> None:
    t0 = time.perf_counter()
    naive = naive_place_many(nodes, reqs, random.Random(seed))
    t_naive = time.perf_counter() - t0

    best = float("inf")
    real: list[Plan] = []
    for _ in range(5):
        t0 = time.perf_counter()
        if len(reqs) == 1:
            real = [place(nodes, reqs[0], rng=random.Random(seed))]
        else:
            real = place_many(nodes, reqs, rng=random.Random(seed))
        best = min(best, time.perf_counter() - t0)

    check_valid(nodes, reqs, naive)
    check_valid(nodes, reqs, real)
    n_naive = sum(len(p.placements) for p in naive)
    n_real = sum(len(p.placements) for p in real)
    assert n_naive == n_real == REPLICAS, (n_naive, n_real)
    assert per_zone(nodes, naive) == per_zone(nodes, real), (per_zone(nodes, naive), per_zone(nodes, real))
    same = all(a.placements == b.placements for a, b in zip(naive, real, strict=True))
    rate_naive, rate_real = n_naive / t_naive, n_real / best
    print(f"{label}")
    print(f"  naive scan : {rate_naive:>12,.0f} placements/s  ({t_naive:.2f} s)")
    print(f"  place      : {rate_real:>12,.0f} placements/s  ({best * 1000:.1f} ms, best of 5)")
    print(
        f"  ratio      : {rate_real / rate_naive:>12,.1f}x   per zone {per_zone(nodes, real)}"
        f"   identical placements: {same}"
    )


def main() -> int:
    nodes = synthetic_nodes(N_NODES, seed=7)
    cordoned = sum(not n.schedulable for n in nodes)
    print(
        f"{N_NODES} nodes ({cordoned} cordoned, zones a/b/c, tier label), {REPLICAS:,} replicas,"
        f" constraint 'node.labels.tier != batch', spread node.labels.zone, python {sys.version.split()[0]}"
    )
    run("1 request x 10,000", nodes, requests(REPLICAS, 1), seed=1)
    run("100 requests x 100 (place_many)", nodes, requests(REPLICAS, 100), seed=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
