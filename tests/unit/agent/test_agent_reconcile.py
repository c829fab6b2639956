"""The agent's pure reconciler: hand-built snapshots and hypothesis-generated ones."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from drover.agent.drivers.base import CREATED, EXITED, RUNNING, Observed
from drover.agent.reconcile import (
    Action,
    Create,
    Remove,
    Restart,
    RestartState,
    Start,
    Stop,
    Wait,
    after_create_failure,
    after_restart,
    backoff_delay,
    crash_looping,
    next_wakeup,
    plan,
)
from drover.agent.status import container_status
from drover.shared.models import AssignedContainer, ContainerState, spec_of

NOW = 1_000_000.0


def want(rid: str, revision: int = 1, restart: str = "always", service: str = "web") -> AssignedContainer:
    spec: dict[str, Any] = {"image": "x", "restart": restart, "stop_grace": 2.0}
    return AssignedContainer(id=rid, service=service, revision=revision, spec=spec)


def obs(
    rid: str,
    cid: str | None = None,
    *,
    state: str = RUNNING,
    revision: int = 1,
    exit_code: int | None = None,
    started: float = NOW - 100,
    finished: float | None = None,
    service: str = "web",
) -> Observed:
    return Observed(
        id=rid,
        container_id=cid or f"c-{rid}",
        name=f"drover-{service}-{rid}",
        service=service,
        revision=revision,
        state=state,
        exit_code=exit_code,
        started_at=started,
        finished_at=finished if finished is not None else (NOW - 1 if state == EXITED else None),
    )


def kinds(actions: list[Action]) -> list[tuple[str, str]]:
    return [(a.kind, a.id) for a in actions]


# --- hand-built snapshots ---------------------------------------------------------------------------


def test_missing_replicas_are_created() -> None:
    actions = plan([want("a"), want("b")], [], NOW, {})
    assert kinds(actions) == [("create", "a"), ("create", "b")]


def test_a_finished_job_replica_is_never_created_again() -> None:
    done = want("a", restart="on-failure").model_copy(update={"finished": True})
    assert kinds(plan([done, want("b")], [], NOW, {})) == [("create", "b")]
    assert plan([done], [obs("a", state=EXITED, exit_code=0)], NOW, {}) == []  # kept for its logs


def test_converged_state_plans_nothing() -> None:
    assert plan([want("a")], [obs("a")], NOW, {}) == []


def test_extra_containers_are_stopped_then_removed() -> None:
    actions = plan([want("a")], [obs("a"), obs("x"), obs("y", state=EXITED, exit_code=0)], NOW, {})
    assert kinds(actions) == [("stop", "x"), ("remove", "x"), ("remove", "y")]


def test_wrong_revision_is_replaced_remove_before_create() -> None:
    actions = plan([want("a", revision=2)], [obs("a", revision=1)], NOW, {})
    assert kinds(actions) == [("stop", "a"), ("remove", "a"), ("create", "a")]
    assert isinstance(actions[0], Stop) and actions[0].grace == 2.0


def test_grace_of_a_container_no_longer_assigned_comes_from_graces() -> None:
    actions = plan([], [obs("a")], NOW, {}, graces={("a", 1): 0.5})
    assert isinstance(actions[0], Stop) and actions[0].grace == 0.5


def test_created_container_is_started() -> None:
    actions = plan([want("a")], [obs("a", state=CREATED)], NOW, {})
    assert actions == [Start("a", "c-a")]


def test_duplicates_keep_the_running_one() -> None:
    actions = plan([want("a")], [obs("a", "c1", state=EXITED, exit_code=1), obs("a", "c2")], NOW, {})
    assert [(a.kind, getattr(a, "container_id", "")) for a in actions] == [("remove", "c1")]


def test_restart_policies() -> None:
    dead = obs("a", state=EXITED, exit_code=3)
    clean = obs("a", state=EXITED, exit_code=0)
    assert kinds(plan([want("a", restart="always")], [clean], NOW, {})) == [("restart", "a")]
    assert kinds(plan([want("a", restart="on-failure")], [dead], NOW, {})) == [("restart", "a")]
    assert plan([want("a", restart="on-failure")], [clean], NOW, {}) == []
    assert plan([want("a", restart="never")], [dead], NOW, {}) == []


def test_first_restart_is_immediate_then_backoff() -> None:
    dead = obs("a", state=EXITED, exit_code=1, started=NOW - 2, finished=NOW - 0.5)
    assert kinds(plan([want("a")], [dead], NOW, {})) == [("restart", "a")]
    state = RestartState(restarts=1, streak=1, last_restart=NOW - 1)
    actions = plan([want("a")], [dead], NOW, {"a": state})
    assert actions == [Wait("a", NOW - 0.5 + 1.0)]
    assert next_wakeup(actions) == NOW + 0.5
    state3 = RestartState(restarts=3, streak=3)
    assert plan([want("a")], [dead], NOW, {"a": state3}) == [Wait("a", NOW - 0.5 + 4.0)]
    assert kinds(plan([want("a")], [dead], NOW + 3.5, {"a": state3})) == [("restart", "a")]


def test_backoff_sequence_is_capped() -> None:
    assert [backoff_delay(s) for s in range(9)] == [0, 1, 2, 4, 8, 16, 30, 30, 30]


def test_ten_seconds_of_uptime_reset_the_backoff() -> None:
    state = RestartState(restarts=6, streak=6)
    long_run = obs("a", state=EXITED, exit_code=1, started=NOW - 20, finished=NOW - 5)
    assert kinds(plan([want("a")], [long_run], NOW, {"a": state})) == [("restart", "a")]
    assert after_restart(state, long_run, NOW).streak == 1
    assert not crash_looping(state, obs("a", started=NOW - 11), NOW)


def test_crash_loop_after_more_than_three_quick_restarts() -> None:
    state = RestartState()
    for i in range(4):
        dead = obs("a", state=EXITED, exit_code=1, started=NOW + i - 0.5, finished=NOW + i)
        assert not crash_looping(state, dead, NOW + i)
        state = after_restart(state, dead, NOW + i)
    assert state.restarts == 4
    looping = obs("a", state=EXITED, exit_code=1, started=NOW + 4, finished=NOW + 4.1)
    assert crash_looping(state, looping, NOW + 4.2)
    a = want("a")
    status = container_status(a, looping, state, NOW + 4.2)
    assert status.state == ContainerState.CRASH_LOOP
    assert status.restarts == 4


def test_failed_create_is_retried_after_a_delay() -> None:
    state = after_create_failure(RestartState(), NOW, "image x not found")
    assert plan([want("a")], [], NOW + 0.5, {"a": state}) == [Wait("a", NOW + 1.0)]
    assert kinds(plan([want("a")], [], NOW + 1.0, {"a": state})) == [("create", "a")]
    status = container_status(want("a"), None, state, NOW)
    assert status.state == ContainerState.PENDING and status.message == "image x not found"


def test_status_of_running_and_exited_containers() -> None:
    a = AssignedContainer(
        id="a",
        service="web",
        revision=1,
        spec={"image": "i", "ports": [{"name": "http", "container": 8080}, {"container": 9090}]},
        restarts=2,
    )
    o = replace(obs("a"), port_map={8080: 32001, 9090: 32002})
    st_ = container_status(a, o, RestartState(restarts=1), NOW)
    assert st_.state == ContainerState.RUNNING and st_.ready
    assert st_.host_port == 32001 and st_.ports == {"http": 32001, "9090": 32002}
    assert st_.restarts == 3
    a_health = a.model_copy(update={"spec": spec_of({**a.spec.stored, "health": {"tcp": {"port": 8080}}})})
    assert not container_status(a_health, o, RestartState(), NOW).ready
    assert container_status(a_health, o, RestartState(), NOW, probe_ok=True).ready
    dead = obs("a", state=EXITED, exit_code=137)
    st2 = container_status(a, dead, RestartState(), NOW)
    assert st2.state == ContainerState.EXITED and st2.exit_code == 137 and not st2.ready


# --- hypothesis ---------------------------------------------------------------------------------------

IDS = ["a", "b", "c", "d"]
policies = st.sampled_from(["always", "on-failure", "never"])
desired_st = st.dictionaries(st.sampled_from(IDS), st.tuples(st.integers(1, 2), policies), max_size=4).map(
    lambda d: [want(rid, rev, pol) for rid, (rev, pol) in sorted(d.items())]
)
observed_one = st.builds(
    lambda rid, n, rev, state, code, age: obs(
        rid,
        f"c-{rid}-{n}",
        state=state,
        revision=rev,
        exit_code=code if state == EXITED else None,
        started=NOW - age - 1,
        finished=NOW - age if state == EXITED else None,
    ),
    st.sampled_from([*IDS, "x", "y"]),
    st.integers(0, 2),
    st.integers(1, 2),
    st.sampled_from([RUNNING, EXITED, CREATED]),
    st.sampled_from([0, 1, 137]),
    st.floats(0, 40),
)
observed_st = st.lists(observed_one, max_size=8, unique_by=lambda o: o.container_id)
restart_st = st.dictionaries(
    st.sampled_from(IDS),
    st.builds(
        lambda n, streak, blocked: RestartState(
            restarts=n, streak=streak, last_restart=NOW - 3, create_blocked_until=NOW + blocked
        ),
        st.integers(0, 10),
        st.integers(0, 8),
        st.sampled_from([-5.0, 0.0, 3.0]),
    ),
)


def _matches(a: AssignedContainer, o: Observed) -> bool:
    return a.id == o.id and a.revision == o.revision and a.service == o.service


@given(desired_st, observed_st, restart_st)
@settings(max_examples=300, deadline=None)
def test_plan_properties(
    desired: list[AssignedContainer], observed: list[Observed], rs: dict[str, RestartState]
) -> None:
    actions = plan(desired, observed, NOW, rs)
    by_cid = {o.container_id: o for o in observed}
    want_by_id = {a.id: a for a in desired}
    # Actions only touch observed containers; removals are exactly the unwanted ones (plus duplicates).
    removed = {a.container_id for a in actions if isinstance(a, Remove)}
    for a in actions:
        if isinstance(a, Stop | Remove | Start | Restart):
            assert a.container_id in by_cid
    for o in observed:
        w = want_by_id.get(o.id)
        if w is None or not _matches(w, o):
            assert o.container_id in removed
    stops = {a.container_id for a in actions if isinstance(a, Stop)}
    assert stops == {cid for cid in removed if by_cid[cid].state in (RUNNING, CREATED)}
    # At most one create per replica, only when nothing matching survives, after that replica's removals.
    for w in desired:
        mine = [a for a in actions if a.id == w.id]
        creates = [i for i, a in enumerate(mine) if isinstance(a, Create)]
        assert len(creates) <= 1
        survivors = [o for o in observed if _matches(w, o) and o.container_id not in removed]
        assert len(survivors) <= 1
        if creates:
            assert not survivors
            assert all(isinstance(a, Stop | Remove) for a in mine[: creates[0]])
            assert creates[0] == len(mine) - 1
        elif not survivors:
            assert any(isinstance(a, Wait) for a in mine)


def _apply(actions: list[Action], observed: list[Observed], now: float) -> list[Observed]:
    world = {o.container_id: o for o in observed}
    for i, a in enumerate(actions):
        if isinstance(a, Create):
            o = obs(a.id, f"new-{i}", revision=a.assigned.revision, service=a.assigned.service, started=now)
            world[o.container_id] = o
        elif isinstance(a, Stop):
            world[a.container_id] = replace(world[a.container_id], state=EXITED, exit_code=143, finished_at=now)
        elif isinstance(a, Remove):
            del world[a.container_id]
        elif isinstance(a, Start | Restart):
            world[a.container_id] = replace(world[a.container_id], state=RUNNING, started_at=now, exit_code=None)
    return list(world.values())


@given(desired_st, observed_st, restart_st)
@settings(max_examples=300, deadline=None)
def test_plan_converges_in_one_step(
    desired: list[AssignedContainer], observed: list[Observed], rs: dict[str, RestartState]
) -> None:
    first = plan(desired, observed, NOW, rs)
    world = _apply(first, observed, NOW)
    second = plan(desired, world, NOW, rs)
    # Only back-off waits remain, and they are the ones already planned.
    assert all(isinstance(a, Wait) for a in second)
    assert set(second) == {a for a in first if isinstance(a, Wait)}
    for w in desired:
        mine = [o for o in world if o.id == w.id]
        waiting = any(a.id == w.id for a in second)
        never_restarted = all(o.state == EXITED for o in mine) and len(mine) == 1
        assert len(mine) == 1 or (waiting and not mine)
        if mine and not waiting and not never_restarted:
            assert mine[0].state == RUNNING and _matches(w, mine[0])
    assert {o.id for o in world} <= {w.id for w in desired}


def test_assignment_gate_orders_by_revision_and_fences_by_term() -> None:
    from drover.agent.assignment import AssignmentGate
    from drover.shared.models import Assignment

    def enc(term: int, gen: int, *ids: str) -> bytes:
        return Assignment(node="n", term=term, generation=gen, containers=[want(i) for i in ids]).to_wire()

    g = AssignmentGate("n")
    assert g.current is None
    first = g.offer(enc(2, 1, "a"), 10, authoritative=True)
    assert first is not None and g.current is first
    assert g.offer(enc(2, 1, "a"), 10, authoritative=False) is None  # the watch replays it
    assert g.offer(enc(2, 0, "z"), 9, authoritative=False) is None  # older entry
    assert g.offer(enc(1, 5, "b"), 11, authoritative=False) is None  # lower term: fenced
    assert g.rejected == 1 and g.current is first
    newer = g.offer(enc(3, 1, "c"), 12, authoritative=False)
    assert newer is not None and [c.id for c in newer.containers] == ["c"]
    deleted = g.offer(None, 13, authoritative=False)
    assert deleted is not None and deleted.containers == []
    assert g.offer(enc(3, 9, "d"), 2, authoritative=True) is not None  # a reset store: re-read wins


def test_assignment_gate_keeps_a_new_highest_term_before_handing_it_out() -> None:
    from drover.agent.assignment import AssignmentGate
    from drover.shared.models import Assignment

    def enc(term: int, *ids: str) -> bytes:
        return Assignment(node="n", term=term, generation=1, containers=[want(i) for i in ids]).to_wire()

    kept: list[int] = []
    g = AssignmentGate("n", max_term=7, on_term=kept.append)  # 7: read back from the node's term file
    assert g.offer(enc(6, "old"), 1, authoritative=True) is None and g.rejected == 1 and kept == []
    assert g.offer(enc(7, "a"), 2, authoritative=True) is not None and kept == []  # same term: nothing to keep
    assert g.offer(enc(9, "b"), 3, authoritative=False) is not None and kept == [9] and g.max_term == 9
