"""The per-service counts the state keeps (controller/tally.py) give the rows a walk over every replica gives.

The property: after any history of assignment writes, heartbeats, registrations and removals, at any time
(nodes lost or not), ``service_rows`` from the tally equals ``service_rows`` from the walk, and the tally equals
one counted from scratch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from drover.controller import views
from drover.controller.state import ClusterState
from drover.controller.tally import StatusTally
from drover.shared.models import (
    AssignedContainer,
    Assignment,
    ContainerState,
    ContainerStatus,
    Heartbeat,
    NodeRegistration,
    ServiceRecord,
)

NOW = 1000.0
GRACE = 3.0
SERVICES = ["a", "b", "c", "d"]
NODES = ["n1", "n2", "n3", "n4"]
STATES = [ContainerState.PENDING, ContainerState.RUNNING, ContainerState.RUNNING, ContainerState.CRASH_LOOP,
          ContainerState.EXITED, ContainerState.LOST]


def record(name: str, mode: str, replicas: int, revision: int, rollout_state: str) -> ServiceRecord:
    spec: dict[str, Any] = {"image": "x", "mode": mode}
    if mode == "job":
        spec.update(restart="on-failure", job={"completions": 2, "parallelism": 2})
    return ServiceRecord(name=name, spec=spec, replicas=replicas, revision=revision, updated=NOW - 5,
                         rollout_state=rollout_state)


records = st.builds(
    record, st.sampled_from(SERVICES), st.sampled_from(["service", "service", "global", "job"]),
    st.integers(0, 4), st.integers(1, 2), st.sampled_from(["complete", "progressing", "failed", "rolled-back"]),
)
replica = st.tuples(st.sampled_from(SERVICES), st.integers(0, 5), st.integers(1, 2))  # (service, number, revision)
status = st.tuples(st.sampled_from([*SERVICES, ""]), st.integers(0, 5), st.integers(1, 2), st.sampled_from(STATES),
                   st.booleans())
steps = st.one_of(
    st.tuples(st.just("assign"), st.sampled_from(NODES), st.lists(replica, max_size=6), st.booleans()),
    st.tuples(st.just("beat"), st.sampled_from(NODES), st.lists(status, max_size=6), st.floats(0, 20)),
    st.tuples(st.just("register"), st.sampled_from(NODES), st.booleans(), st.floats(0, 20)),
)


def rid(service: str, n: int) -> str:
    return f"{service or 'a'}{n}"


def apply(state: ClusterState, step: tuple[Any, ...], rev: int) -> None:
    kind, node = step[0], step[1]
    if kind == "assign":
        containers = list({rid(s, n): AssignedContainer(id=rid(s, n), service=s, revision=r, spec={"image": "x"})
                           for s, n, r in step[2]}.values())
        state.set_assignment(node, None if step[3] else Assignment(node=node, containers=containers), rev)
    elif kind == "beat":
        state.on_heartbeat(Heartbeat(node=node, containers=list({
            rid(s, n): ContainerStatus(id=rid(s, n), service=s, revision=r, state=cs, ready=ready)
            for s, n, r, cs, ready in step[2]
        }.values())), NOW + step[3])
    else:
        state.set_registration(NodeRegistration(name=node) if step[2] else None, node, NOW + step[3])


@settings(max_examples=300, deadline=None)
@given(st.lists(records, max_size=4), st.lists(steps, max_size=25), st.floats(0, 30))
def test_tally_rows_are_the_walked_rows(recs: list[ServiceRecord], history: list[tuple[Any, ...]], at: float) -> None:
    state = ClusterState(started=0.0, node_grace=GRACE)
    for r in recs:
        state.set_service(r.name, r, 1)
    for rev, step in enumerate(history, 1):
        apply(state, step, rev)
        snap = state.snapshot(NOW + at)
        assert snap.tally is state.tally
        walked = views.service_rows(dataclasses.replace(snap, tally=None))
        assert views.service_rows(snap) == walked
        for name in {r.name for r in recs}:
            assert views.service_rows(snap, name=name) == [r for r in walked if r["name"] == name]
    fresh = StatusTally()
    for node in set(state.assignments) | set(state.nodes):
        a, ns = state.assignments.get(node), state.nodes.get(node)
        fresh.recount(node, a.value.containers if a else [], ns.observed if ns else {})
    assert fresh.by_service == state.tally.by_service
    assert fresh.by_node == state.tally.by_node


def test_a_lost_node_counts_its_replicas_lost_not_running() -> None:
    state = ClusterState(started=0.0, node_grace=GRACE)
    state.set_service("web", record("web", "service", 2, 1, "complete"), 1)
    for node in ("n1", "n2"):
        state.set_registration(NodeRegistration(name=node), node, NOW)
        state.set_assignment(node, Assignment(node=node, containers=[
            AssignedContainer(id=f"w-{node}", service="web", revision=1, spec={"image": "x"})]), 1)
        state.on_heartbeat(Heartbeat(node=node, containers=[ContainerStatus(
            id=f"w-{node}", service="web", revision=1, state=ContainerState.RUNNING, ready=True)]), NOW)
    state.on_heartbeat(Heartbeat(node="n2", containers=[ContainerStatus(
        id="w-n2", service="web", revision=1, state=ContainerState.RUNNING, ready=True)]), NOW + 5)
    row = views.service_rows(state.snapshot(NOW + 1))[0]
    assert (row["running"], row["ready"], row["updated"], row["status"]) == (2, 2, 2, "available")
    row = views.service_rows(state.snapshot(NOW + 5))[0]  # n1 silent past its grace: lost
    assert (row["running"], row["ready"], row["updated"], row["status"]) == (1, 1, 2, "degraded")
