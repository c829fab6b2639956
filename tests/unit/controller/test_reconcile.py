"""The pure cluster plan: lost nodes, deleted services, placement within capacity."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drover.controller.reconcile import allocation, plan
from drover.controller.rollout import FAILING_RESTARTS
from drover.controller.snapshot import NodeState, Snapshot
from drover.shared.manifest import ResourceSpec, UpdatePolicy
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

NOW = 1000.0
SPEC = {"image": "x", "resources": {"cpu": 0.5, "memory": 1 << 20}}


def node(name: str, cpu: float = 2.0, alive: bool = True, cordoned: bool = False) -> NodeState:
    reg = NodeRegistration(name=name, capacity=Resources(cpu=cpu, memory=1 << 30))
    return NodeState(reg=reg, ctl=NodeControl(cordoned=cordoned), last_heartbeat=NOW if alive else NOW - 60,
                     seen_since=0.0)


def svc(name: str, replicas: int, revision: int = 1) -> ServiceRecord:
    return ServiceRecord(name=name, spec=SPEC, replicas=replicas, revision=revision, updated=NOW)


def snap(
    nodes: list[NodeState], services: list[ServiceRecord], assignments: dict[str, list[AssignedContainer]]
) -> Snapshot:
    return Snapshot(
        now=NOW, node_grace=3.0,
        services={s.name: s for s in services},
        nodes={n.reg.name: n for n in nodes},
        assignments={k: Assignment(node=k, containers=v) for k, v in assignments.items()},
    )


def ac(rid: str, service: str = "web", revision: int = 1) -> AssignedContainer:
    return AssignedContainer(id=rid, service=service, revision=revision, spec=SPEC)


def test_creates_and_spreads() -> None:
    p = plan(snap([node("a"), node("b")], [svc("web", 4)], {}), random.Random(1))
    assert {n: len(c) for n, c in p.assignments.items()} == {"a": 2, "b": 2}
    assert sum(e.kind == "scheduled" for e in p.events) == 4


def test_lost_node_is_emptied_and_replaced() -> None:
    s = snap([node("a"), node("b", alive=False)], [svc("web", 2)], {"a": [ac("x")], "b": [ac("y")]})
    p = plan(s, random.Random(1))
    assert p.assignments["b"] == []
    assert len(p.assignments["a"]) == 2
    replacement = next(c for c in p.assignments["a"] if c.id != "x")
    assert replacement.restarts == 1


def test_deleted_service_removed_and_cordoned_node_skipped() -> None:
    s = snap([node("a", cordoned=True), node("b")], [svc("api", 1)], {"a": [ac("x", service="gone")]})
    p = plan(s, random.Random(1))
    assert p.assignments["a"] == []
    assert [c.service for c in p.assignments["b"]] == ["api"]


def test_unplaced_is_reported() -> None:
    p = plan(snap([node("a", cpu=1.0)], [svc("web", 3)], {}), random.Random(1))
    assert len(p.assignments["a"]) == 2
    assert "1 replica(s) cannot be placed" in p.unplaced["web"]


@settings(max_examples=150, deadline=None)
@given(
    cpus=st.lists(st.sampled_from([0.5, 1.0, 2.0, 4.0]), min_size=1, max_size=6),
    wants=st.lists(st.integers(0, 10), min_size=1, max_size=4),
    seed=st.integers(0, 1000),
)
def test_never_overcommits(cpus: list[float], wants: list[int], seed: int) -> None:
    nodes = [node(f"n{i}", cpu=c) for i, c in enumerate(cpus)]
    services = [svc(f"s{i}", w) for i, w in enumerate(wants)]
    p = plan(snap(nodes, services, {}), random.Random(seed))
    for n in nodes:
        cpu, _ = allocation(p.assignments.get(n.reg.name, []))
        assert cpu <= n.reg.capacity.cpu + 1e-9
    placed = sum(len(v) for v in p.assignments.values())
    assert placed == min(sum(wants), sum(int(c / 0.5) for c in cpus))


def poisoned(name: str, **fields: object) -> ServiceRecord:
    """A record whose spec holds what validation never lets through (a typed spec cannot be built with it, and
    a stored one that does not decode is held, not planned): stands for any bug that makes one service's step
    raise."""
    spec = spec_of(SPEC).model_copy(update=fields)
    return ServiceRecord.model_construct(**{**svc(name, 2).__dict__, "spec": spec})


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")  # the poisoned cpu, made on purpose
def test_a_poisoned_service_is_skipped_and_the_others_placed() -> None:
    """A service whose rollout step raises (a bad max_surge) and ones whose placement raises (a placement that
    is not a map, a cpu that is not a number) are reported in ``failed``; every other service is still placed
    in the same pass. (A constraint the grammar rejects is reported as unplaced by the scheduler itself.)"""
    bad_step = poisoned("bad-step", update=UpdatePolicy.model_construct(max_surge="lots"))
    bad_place = poisoned("bad-place", placement="zone a")
    bad_res = poisoned("bad-res", resources=ResourceSpec.model_construct(cpu="many", memory=1))
    s = snap([node("a"), node("b")], [bad_step, svc("web", 2), bad_place, bad_res, svc("zz", 2)],
             {"a": [ac("old", service="bad-step")]})
    p = plan(s, random.Random(1))
    assert set(p.failed) == {"bad-step", "bad-place", "bad-res"}
    assert "rollout step failed" in p.failed["bad-step"] and "placement failed" in p.failed["bad-place"]
    placed = [c.service for cs in p.assignments.values() for c in cs]
    assert sorted(placed) == ["bad-step", "web", "web", "zz", "zz"]  # bad-step keeps its replica untouched
    assert {e.service for e in p.events if e.kind == "scheduled"} == {"web", "zz"}


@given(st.integers(min_value=0, max_value=5), st.integers(min_value=0, max_value=4))
@settings(max_examples=30, deadline=None)
def test_poison_never_changes_what_the_others_get(seed: int, poisoned_count: int) -> None:
    """Whatever is poisoned, the healthy services' placement equals the plan without the poisoned ones."""
    healthy = [svc(f"s{i}", 1 + i % 3) for i in range(4)]
    poison = [poisoned(f"p{i}", update=UpdatePolicy.model_construct(max_unavailable=[], max_surge=1))
              for i in range(poisoned_count)]
    nodes = [node("a"), node("b"), node("c")]
    with_poison = plan(snap(nodes, healthy + poison, {}), random.Random(seed))
    without = plan(snap(nodes, healthy, {}), random.Random(seed))
    assert set(with_poison.failed) == {p.name for p in poison}
    assert with_poison.assignments == without.assignments


# Restarts carried by replacement after node losses are relocations: shown, never judged as crashes.

ROLLOUT_SPEC = {**SPEC, "update": {"min_ready": 0, "auto_rollback": True}}


def running(c: AssignedContainer, in_place: int) -> ContainerStatus:
    """What an agent reports: the carried restarts plus its own in-place ones."""
    return ContainerStatus(id=c.id, service=c.service, revision=c.revision, state=ContainerState.RUNNING,
                           ready=True, restarts=c.restarts + in_place, started_at=NOW - 100)


def rolling(carried: list[int], in_place: list[int]) -> Snapshot:
    """A rollout to revision 2 (last good: 1) whose replicas were all placed after node losses."""
    reps = [AssignedContainer(id=f"r{i}", service="web", revision=2, spec=ROLLOUT_SPEC, restarts=k)
            for i, k in enumerate(carried)]
    a = node("a")
    a.observed = {c.id: running(c, n) for c, n in zip(reps, in_place, strict=True)}
    svc = ServiceRecord(name="web", spec=ROLLOUT_SPEC, replicas=len(reps) + 1, revision=2, updated=NOW,
                        rollout_state="progressing", last_good=1, rollout_started=NOW - 1, rollout_progress_at=NOW - 1)
    return snap([a], [svc], {"a": reps})


@given(carried=st.lists(st.integers(0, 50), min_size=1, max_size=4), data=st.data())
@settings(max_examples=60, deadline=None)
def test_relocations_never_fail_a_rollout(carried: list[int], data: st.DataObject) -> None:
    in_place = data.draw(st.lists(st.integers(0, FAILING_RESTARTS - 1), min_size=len(carried), max_size=len(carried)))
    p = plan(rolling(carried, in_place), random.Random(1))
    verdict = p.verdicts.get("web")
    assert verdict is None or verdict.state not in ("failed", "rolled-back"), verdict


def test_in_place_restarts_still_fail_a_rollout_after_relocations() -> None:
    p = plan(rolling([3, 0], [0, FAILING_RESTARTS]), random.Random(1))
    verdict = p.verdicts["web"]
    assert verdict.state == "rolled-back" and verdict.rollback_to == 1
    assert f"replica r1 on a is running after {FAILING_RESTARTS} restart(s)" in verdict.reason


def test_carried_restarts_count_each_restart_once() -> None:
    """A replica placed after one node loss (carried 1) that restarted twice in place, whose node is lost in
    turn: its replacement has 1 + 2 + 1 restarts (the agent's report already includes the carried 1)."""
    c = AssignedContainer(id="y", service="web", revision=1, spec=SPEC, restarts=1)
    b = node("b", alive=False)
    b.observed = {"y": running(c, 2)}
    p = plan(snap([node("a"), b], [svc("web", 1)], {"a": [], "b": [c]}), random.Random(1))
    assert [r.restarts for r in p.assignments["a"]] == [4]
