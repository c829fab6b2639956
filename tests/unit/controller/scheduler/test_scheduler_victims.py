"""choose_victims: which replicas to remove so the rest stays spread."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drover.controller.scheduler import NodeView, choose_victims


def nv(name: str, zone: str | None = None, cpu_used: float = 0.0, web: int = 0) -> NodeView:
    labels = {} if zone is None else {"zone": zone}
    return NodeView(name, labels, 4.0, 1000, cpu_used, 0, True, {"web": web} if web else {})


def test_removes_from_the_fullest_zone_then_fullest_node() -> None:
    nodes = [nv("a1", "a"), nv("a2", "a"), nv("b1", "b"), nv("c1", "c")]
    cands = [("r1", "a1"), ("r2", "a1"), ("r3", "a2"), ("r4", "b1"), ("r5", "c1")]
    assert choose_victims(nodes, "web", cands, 1, "node.labels.zone") == ["r2"]
    assert choose_victims(nodes, "web", cands, 2, "node.labels.zone") == ["r2", "r1"]  # a1 and a2 tie: by name
    # without spread, the node with the most replicas goes first
    assert choose_victims(nodes, "web", cands, 1, None) == ["r2"]


def test_ties_go_to_the_most_allocated_node() -> None:
    nodes = [nv("x", cpu_used=1.0), nv("y", cpu_used=3.0), nv("z", cpu_used=2.0)]
    cands = [("r1", "x"), ("r2", "y"), ("r3", "z")]
    assert choose_victims(nodes, "web", cands, 2, None) == ["r2", "r3"]
    assert choose_victims(nodes, "web", cands, 2, "node.name") == ["r2", "r3"]


def test_unknown_nodes_go_first_on_a_tie() -> None:
    nodes = [nv("x", cpu_used=3.9)]
    assert choose_victims(nodes, "web", [("r1", "x"), ("r2", "gone")], 1, None) == ["r2"]


def test_non_candidate_replicas_count_toward_spread() -> None:
    # zone a holds 3 replicas of web (2 new, not candidates), zone b holds 2 candidates
    nodes = [nv("a1", "a", web=3), nv("b1", "b", web=2)]
    cands = [("old-a", "a1"), ("old-b1", "b1"), ("old-b2", "b1")]
    assert choose_victims(nodes, "web", cands, 1, "node.labels.zone") == ["old-a"]
    assert choose_victims(nodes, "web", cands, 2, "node.labels.zone") == ["old-a", "old-b2"]


def test_edge_cases() -> None:
    assert choose_victims([], "web", [], 3, None) == []
    assert choose_victims([], "web", [("r1", "n")], 0, None) == []
    assert choose_victims([], "web", [("r1", "n"), ("r2", "n")], 5, None) == ["r2", "r1"]
    with pytest.raises(ValueError):
        choose_victims([], "web", [("r1", "n")], 1, "zone")


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[NodeView], list[tuple[str, str]], int, str | None]:
    n = draw(st.integers(1, 8))
    nodes = [
        nv(f"n{i}", draw(st.sampled_from(["a", "b", "c", None])), draw(st.sampled_from([0.0, 1.0, 2.0])))
        for i in range(n)
    ]
    cands = []
    for i, node in enumerate(nodes):
        cands += [(f"r{i}-{k}", node.name) for k in range(draw(st.integers(0, 5)))]
    cands = draw(st.permutations(cands))
    count = draw(st.integers(0, len(cands) + 1))
    return nodes, cands, count, draw(st.sampled_from([None, "node.name", "node.labels.zone"]))


@settings(max_examples=300, deadline=None)
@given(clusters())
def test_victims_keep_spread(case: tuple[list[NodeView], list[tuple[str, str]], int, str | None]) -> None:
    nodes, cands, count, spread = case
    victims = choose_victims(nodes, "web", cands, count, spread)
    assert victims == choose_victims(nodes, "web", list(reversed(cands)), count, spread)  # order-free
    assert len(victims) == min(count, len(cands)) == len(set(victims))
    node_of = dict(cands)
    assert set(victims) <= set(node_of)

    def domain(node: str) -> str:
        if spread == "node.name":
            return node
        zone = next(n.labels.get("zone", "") for n in nodes if n.name == node)
        return zone if spread else ""

    left_node = Counter(node_of.values())
    left_node.subtract(node_of[v] for v in victims)
    left_dom = Counter[str]()
    for node, k in left_node.items():
        left_dom[domain(node)] += k
    hit_dom = {domain(node_of[v]) for v in victims}
    hit_node = {node_of[v] for v in victims}
    # a removal always came from a fullest domain, and within it from a fullest node
    for d in hit_dom:
        assert left_dom[d] >= max(left_dom.values()) - 1
    for node in hit_node:
        same = [k for m, k in left_node.items() if domain(m) == domain(node)]
        assert left_node[node] >= max(same) - 1
