"""Hypothesis properties of place / place_many, checked against a naive reference."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from drover.controller.scheduler import (
    NodeView,
    Placement,
    PlacementRequest,
    Plan,
    parse_constraint,
    place,
    place_many,
)

SERVICES = ("web", "db")
CONSTRAINTS = (
    "node.labels.zone == a",
    "node.labels.zone != b",
    "node.labels.disk = ssd",
    "node.name != n1",
    "node.name == n2",
)
SPREADS = (None, "node.name", "node.labels.zone")


@st.composite
def node_lists(draw: st.DrawFn, max_nodes: int = 12) -> list[NodeView]:
    n = draw(st.integers(0, max_nodes))
    nodes = []
    for i in range(n):
        labels = {}
        zone = draw(st.sampled_from(["a", "b", "c", None]))
        if zone is not None:
            labels["zone"] = zone
        if draw(st.booleans()):
            labels["disk"] = draw(st.sampled_from(["ssd", "hdd"]))
        cpu_cap = draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.3, 8.0]))
        mem_cap = draw(st.sampled_from([0, 300, 1000, 4096]))
        nodes.append(
            NodeView(
                name=f"n{i}",
                labels=labels,
                cpu_capacity=cpu_cap,
                mem_capacity=mem_cap,
                # sometimes already over capacity (e.g. the capacity shrank)
                cpu_allocated=draw(st.sampled_from([0.0, 0.1, 0.3, 0.7, 1.0, 2.5, 9.0])),
                mem_allocated=draw(st.sampled_from([0, 100, 256, 999, 5000])),
                schedulable=draw(st.booleans()) or draw(st.booleans()),
                service_counts={s: draw(st.integers(0, 3)) for s in SERVICES if draw(st.booleans())},
            )
        )
    return nodes


@st.composite
def request_lists(draw: st.DrawFn, names: Sequence[str], max_requests: int = 3) -> list[PlacementRequest]:
    return [
        PlacementRequest(
            service=draw(st.sampled_from(SERVICES)),
            count=draw(st.integers(0, 25)),
            cpu=draw(st.sampled_from([0.0, 0.1, 0.25, 0.3, 1.0, 1.5])),
            memory=draw(st.sampled_from([0, 1, 100, 256])),
            constraints=tuple(draw(st.lists(st.sampled_from(CONSTRAINTS), max_size=2, unique=True))),
            spread=draw(st.sampled_from(SPREADS)),
            avoid_nodes=frozenset(draw(st.lists(st.sampled_from(list(names)), max_size=2)) if names else ()),
        )
        for _ in range(draw(st.integers(1, max_requests)))
    ]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[NodeView], list[PlacementRequest], int]:
    nodes = draw(node_lists())
    return nodes, draw(request_lists([n.name for n in nodes])), draw(st.integers(0, 2**32))


# --------------------------------------------------------------------------- reference
def _load(cpu: float, cpu_cap: float, mem: float, mem_cap: float) -> float:
    fracs = []
    for used, cap in ((cpu, cpu_cap), (mem, mem_cap)):
        fracs.append(used / cap if cap > 0 else (0.0 if used <= 0 else float("inf")))
    return max(fracs)


def reference(nodes: Sequence[NodeView], reqs: Sequence[PlacementRequest], seed: int) -> list[Plan]:
    """Score every node for every replica, straight from the spec."""
    rng = random.Random(seed)
    cpu = {n.name: n.cpu_allocated for n in nodes}
    mem = {n.name: n.mem_allocated for n in nodes}
    counts = {s: {n.name: n.service_counts.get(s, 0) for n in nodes} for s in SERVICES}
    plans = []
    for r in reqs:
        cs = [parse_constraint(t) for t in r.constraints]
        tb = [rng.random() for _ in nodes]
        on = counts[r.service]

        def dom(n: NodeView, spread: str | None = r.spread) -> str:
            if spread == "node.labels.zone":
                return n.labels.get("zone", "")
            return n.name if spread == "node.name" else ""

        def reason(n: NodeView, r: PlacementRequest = r, cs: list = cs) -> str | None:  # type: ignore[type-arg]
            if not n.schedulable:
                return "unschedulable"
            if n.name in r.avoid_nodes:
                return "avoided"
            for c in cs:
                if not c.matches(n.name, n.labels):
                    return f"constraint {c.text}"
            if r.cpu > 0 and cpu[n.name] + r.cpu > n.cpu_capacity:
                return "insufficient cpu"
            if r.memory > 0 and mem[n.name] + r.memory > n.mem_capacity:
                return "insufficient memory"
            return None

        in_dom = Counter[str]()
        for n in nodes:
            in_dom[dom(n)] += on[n.name]
        placed = []
        for index in range(r.count):
            ok = [(pos, n) for pos, n in enumerate(nodes) if reason(n) is None]
            if not ok:
                break
            _, n = min(
                ok,
                key=lambda pn: (
                    in_dom[dom(pn[1])] if r.spread == "node.labels.zone" else 0,
                    on[pn[1].name],
                    _load(cpu[pn[1].name] + r.cpu, pn[1].cpu_capacity, mem[pn[1].name] + r.memory, pn[1].mem_capacity),
                    tb[pn[0]],
                    pn[0],
                ),
            )
            cpu[n.name] += r.cpu
            mem[n.name] += r.memory
            on[n.name] += 1
            in_dom[dom(n)] += 1
            placed.append(Placement(n.name, index))
        reasons = Counter(x for x in map(reason, nodes) if x is not None)
        plans.append(Plan(tuple(placed), r.count - len(placed), dict(sorted(reasons.items()))))
    return plans


def check_valid(nodes: Sequence[NodeView], reqs: Sequence[PlacementRequest], plans: Sequence[Plan]) -> None:
    by_name = {n.name: n for n in nodes}
    cpu = Counter[str]()
    mem = Counter[str]()
    for r, plan in zip(reqs, plans, strict=True):
        cs = [parse_constraint(t) for t in r.constraints]
        assert len(plan.placements) + plan.unplaced == r.count
        assert plan.unplaced >= 0
        assert [p.index for p in plan.placements] == list(range(len(plan.placements)))
        for p in plan.placements:
            n = by_name[p.node]
            assert n.schedulable
            assert p.node not in r.avoid_nodes
            assert all(c.matches(n.name, n.labels) for c in cs)
            cpu[p.node] += r.cpu  # type: ignore[assignment]
            mem[p.node] += r.memory
    for name in set(cpu) | set(mem):
        n = by_name[name]
        if cpu[name] > 0:
            assert n.cpu_allocated + cpu[name] <= n.cpu_capacity + 1e-9, f"{name} cpu over-committed"
        if mem[name] > 0:
            assert n.mem_allocated + mem[name] <= n.mem_capacity, f"{name} memory over-committed"


# --------------------------------------------------------------------------- properties
@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_valid_and_equal_to_naive_reference(case: tuple[list[NodeView], list[PlacementRequest], int]) -> None:
    nodes, reqs, seed = case
    plans = place_many(nodes, reqs, rng=random.Random(seed))
    check_valid(nodes, reqs, plans)
    assert plans == reference(nodes, reqs, seed)


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_place_is_place_many_of_one_and_deterministic(
    case: tuple[list[NodeView], list[PlacementRequest], int],
) -> None:
    nodes, reqs, seed = case
    one = place(nodes, reqs[0], rng=random.Random(seed))
    assert one == place(nodes, reqs[0], rng=random.Random(seed))
    assert [one] == place_many(nodes, reqs[:1], rng=random.Random(seed))
    check_valid(nodes, reqs[:1], [one])


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_places_as_many_as_fit(case: tuple[list[NodeView], list[PlacementRequest], int]) -> None:
    """When something is left unplaced, no node could take one more replica."""
    nodes, reqs, seed = case
    plans = place_many(nodes, reqs, rng=random.Random(seed))
    for plan in plans:
        if plan.unplaced:
            assert sum(plan.reasons.values()) == len(nodes)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "c", None]), min_size=1, max_size=15),
    st.integers(0, 60),
    st.integers(0, 2**32),
)
def test_spread_is_even_when_capacity_allows(zones: list[str | None], count: int, seed: int) -> None:
    nodes = [
        NodeView(f"n{i}", {} if z is None else {"zone": z}, 100.0, 10**9, 0.0, 0, True, {}) for i, z in enumerate(zones)
    ]
    plan = place(nodes, PlacementRequest("web", count, 1.0, 1000, spread="node.labels.zone"), rng=random.Random(seed))
    assert plan.unplaced == 0
    zone = {n.name: n.labels.get("zone", "") for n in nodes}
    per_domain = Counter({zone[n.name]: 0 for n in nodes})
    per_domain.update(zone[p.node] for p in plan.placements)
    assert max(per_domain.values()) - min(per_domain.values()) <= 1
    # within a domain, nodes are balanced too
    per_node = Counter({n.name: 0 for n in nodes})
    per_node.update(p.node for p in plan.placements)
    for d in per_domain:
        inside = [per_node[n] for n in per_node if zone[n] == d]
        assert max(inside) - min(inside) <= 1


@settings(max_examples=100, deadline=None)
@given(node_lists(max_nodes=10), st.integers(0, 2**32))
def test_unschedulable_nodes_get_nothing(nodes: list[NodeView], seed: int) -> None:
    plan = place(nodes, PlacementRequest("web", 50, 0.0, 0), rng=random.Random(seed))
    cordoned = {n.name for n in nodes if not n.schedulable}
    assert not cordoned & {p.node for p in plan.placements}
    assert plan.reasons.get("unschedulable", 0) == len(cordoned)
    assert plan.unplaced == (50 if len(cordoned) == len(nodes) else 0)
