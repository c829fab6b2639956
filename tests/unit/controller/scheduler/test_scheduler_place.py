"""place / place_many on hand-built snapshots."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from drover.controller.scheduler import NodeView, Placement, PlacementRequest, Plan, place, place_many

GIB = 1 << 30


def nv(
    name: str,
    *,
    cpu: float = 4.0,
    mem: int = 8 * GIB,
    cpu_used: float = 0.0,
    mem_used: int = 0,
    schedulable: bool = True,
    counts: dict[str, int] | None = None,
    **labels: str,
) -> NodeView:
    return NodeView(name, labels, cpu, mem, cpu_used, mem_used, schedulable, counts or {})


def req(count: int, cpu: float = 1.0, memory: int = GIB, **kw: object) -> PlacementRequest:
    return PlacementRequest("web", count, cpu, memory, **kw)  # type: ignore[arg-type]


def by_node(plan: Plan) -> Counter[str]:
    return Counter(p.node for p in plan.placements)


def rng() -> random.Random:
    return random.Random(42)


def test_places_all_and_indexes_in_order() -> None:
    plan = place([nv("a"), nv("b")], req(4), rng=rng())
    assert plan.unplaced == 0
    assert [p.index for p in plan.placements] == [0, 1, 2, 3]
    assert by_node(plan) == {"a": 2, "b": 2}
    assert plan.reasons == {}


def test_least_allocated_wins_and_fewest_replicas_before_load() -> None:
    nodes = [nv("busy", cpu_used=3.0), nv("idle")]
    assert place(nodes, req(1), rng=rng()).placements == (Placement("idle", 0),)
    # "idle" already runs a replica of web: fewest replicas beats lower load
    nodes = [nv("busy", cpu_used=2.0), nv("idle", counts={"web": 1})]
    assert place(nodes, req(1), rng=rng()).placements == (Placement("busy", 0),)
    # replicas of other services do not count
    nodes = [nv("busy", cpu_used=2.0), nv("idle", counts={"db": 5})]
    assert place(nodes, req(1), rng=rng()).placements == (Placement("idle", 0),)


def test_load_is_max_of_cpu_and_memory_after_placing() -> None:
    nodes = [nv("memfull", mem_used=6 * GIB), nv("cpufull", cpu_used=2.0)]
    # after placing: memfull max(0.25, 7/8) vs cpufull max(0.75, 1/8)
    assert place(nodes, req(1), rng=rng()).placements[0].node == "cpufull"


def test_unschedulable_nodes_get_nothing() -> None:
    nodes = [nv("a", schedulable=False), nv("b"), nv("c", schedulable=False)]
    plan = place(nodes, req(3), rng=rng())
    assert by_node(plan) == {"b": 3}
    assert plan.reasons == {"unschedulable": 2}


def test_unplaced_and_reasons_when_capacity_is_short() -> None:
    nodes = [
        nv("a", cpu=2.0),  # takes 2, then insufficient cpu
        nv("b", mem=GIB),  # takes 1, then insufficient memory
        nv("c", schedulable=False),
        nv("d", zone="b"),
        nv("e", cpu=0.5),  # never fits
    ]
    plan = place(nodes, req(10, constraints=("node.labels.zone != b",)), rng=rng())
    assert by_node(plan) == {"a": 2, "b": 1}
    assert plan.unplaced == 7
    assert plan.reasons == {
        "constraint node.labels.zone != b": 1,
        "insufficient cpu": 2,
        "insufficient memory": 1,
        "unschedulable": 1,
    }


def test_first_failing_filter_is_the_reason() -> None:
    nodes = [
        nv("n1", cpu=0.1, schedulable=False, zone="a"),
        nv("n2", cpu=0.1, zone="a"),
        nv("n3", cpu=0.1, zone="b"),
    ]
    plan = place(
        nodes,
        req(1, constraints=("node.name != n3", "node.labels.zone == b")),
        rng=rng(),
    )
    assert plan.unplaced == 1
    assert plan.reasons == {
        "unschedulable": 1,
        "constraint node.labels.zone == b": 1,  # n2: label constraint fails
        "constraint node.name != n3": 1,  # n3: the first constraint fails first
    }


def test_constraints_on_name_and_labels() -> None:
    nodes = [nv("n1", zone="a"), nv("n2", zone="a"), nv("n3", zone="b"), nv("n4")]
    plan = place(nodes, req(6, constraints=("node.labels.zone = a", "node.name != n2")), rng=rng())
    assert by_node(plan) == {"n1": 4}
    assert plan.unplaced == 2
    plan = place(nodes, req(3, constraints=("node.labels.zone != a",)), rng=rng())
    assert set(by_node(plan)) == {"n3", "n4"}  # a missing label is "!= a"


def test_bad_constraint_places_nothing_and_says_why() -> None:
    # validation shares the grammar, so only a record written around it can carry this: no raise
    plan = place([nv("a"), nv("b")], req(2, constraints=("zone is a",)), rng=rng())
    assert plan.placements == () and plan.unplaced == 2
    [(reason, count)] = plan.reasons.items()
    assert reason.startswith("invalid constraint: ") and "unknown attribute 'zone'" in reason and count == 2


def test_avoid_nodes() -> None:
    plan = place([nv("a"), nv("b")], req(3, avoid_nodes=frozenset({"a"})), rng=rng())
    assert by_node(plan) == {"b": 3}
    assert plan.reasons == {"avoided": 1}


def test_zero_request_always_fits_even_on_full_nodes() -> None:
    nodes = [nv("a", cpu=1.0, cpu_used=1.0, mem=GIB, mem_used=GIB), nv("b", cpu=0.0, mem=0)]
    plan = place(nodes, req(100, cpu=0.0, memory=0), rng=rng())
    assert plan.unplaced == 0
    assert by_node(plan) == {"a": 50, "b": 50}
    plan = place(nodes, req(1, cpu=0.0, memory=1), rng=rng())
    assert plan.unplaced == 1
    assert plan.reasons == {"insufficient memory": 2}


def test_exact_fit_is_allowed_over_is_not() -> None:
    plan = place([nv("a", cpu=1.0, cpu_used=0.25)], req(5, cpu=0.25, memory=0), rng=rng())
    assert len(plan.placements) == 3 and plan.unplaced == 2


def test_spread_by_zone_then_by_node() -> None:
    nodes = [nv(f"a{i}", zone="a") for i in range(4)] + [nv("b0", zone="b"), nv("x")]
    plan = place(nodes, req(6, cpu=0.0, memory=0, spread="node.labels.zone"), rng=rng())
    zone = {n.name: n.labels.get("zone", "") for n in nodes}
    assert Counter(zone[p.node] for p in plan.placements) == {"a": 2, "b": 2, "": 2}
    assert max(by_node(plan)[n] for n in ("a0", "a1", "a2", "a3")) == 1


def test_spread_counts_existing_replicas() -> None:
    nodes = [nv("a0", zone="a", counts={"web": 3}), nv("b0", zone="b"), nv("c0", zone="c", counts={"web": 1})]
    plan = place(nodes, req(4, cpu=0.0, memory=0, spread="node.labels.zone"), rng=rng())
    assert by_node(plan) == {"b0": 3, "c0": 1}  # totals become 3/3/2


def test_spread_skips_a_full_domain() -> None:
    nodes = [nv("a0", zone="a", cpu=1.0), nv("b0", zone="b"), nv("b1", zone="b")]
    plan = place(nodes, req(5, spread="node.labels.zone"), rng=rng())
    assert plan.unplaced == 0
    assert by_node(plan)["a0"] == 1


def test_spread_by_node_name() -> None:
    nodes = [nv("a", counts={"web": 2}), nv("b"), nv("c", cpu_used=3.0)]
    plan = place(nodes, req(2, cpu=0.5, spread="node.name"), rng=rng())
    assert by_node(plan) == {"b": 1, "c": 1}


def test_rng_breaks_exact_ties_only_and_is_deterministic() -> None:
    nodes = [nv(f"n{i}") for i in range(20)]
    firsts = {place(nodes, req(1), rng=random.Random(s)).placements[0].node for s in range(40)}
    assert len(firsts) > 5
    a = place(nodes, req(7), rng=random.Random(3))
    b = place(nodes, req(7), rng=random.Random(3))
    assert a == b


def test_place_many_applies_earlier_plans() -> None:
    nodes = [nv("a", cpu=2.0), nv("b", cpu=2.0)]
    r1 = PlacementRequest("web", 3, 1.0, 0)
    r2 = PlacementRequest("web", 3, 1.0, 0)
    p1, p2 = place_many(nodes, [r1, r2], rng=rng())
    assert p1.unplaced == 0 and len(p2.placements) == 1 and p2.unplaced == 2
    assert p2.reasons == {"insufficient cpu": 2}
    # counts of the same service carry over too: the second request goes to the emptier node
    q1, q2 = place_many([nv("a"), nv("b")], [PlacementRequest("web", 1, 0, 0)] * 2, rng=rng())
    assert q1.placements[0].node != q2.placements[0].node
    # the snapshot itself is not modified
    assert nodes[0].cpu_allocated == 0.0 and nodes[0].service_counts == {}


def test_empty_inputs() -> None:
    assert place([], req(2), rng=rng()) == Plan((), 2, {})
    assert place([nv("a")], req(0), rng=rng()) == Plan((), 0, {})
    assert place_many([nv("a")], [], rng=rng()) == []


@pytest.mark.parametrize(
    "kwargs",
    [{"count": -1}, {"cpu": -0.5}, {"memory": -1}, {"cpu": float("nan")}, {"spread": "zone"}],
)
def test_request_validation(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"service": "web", "count": 1, "cpu": 1.0, "memory": 0}
    with pytest.raises(ValueError):
        PlacementRequest(**{**base, **kwargs})  # type: ignore[arg-type]


def test_duplicate_node_names_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        place([nv("a"), nv("a")], req(1), rng=rng())
