"""The pure per-service step: creation, scaling, rolling between revisions, drain."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from drover.controller.rollout import ReplicaView, resolve_bound, service_step, update_bounds
from drover.shared.manifest import UpdatePolicy

NOW = 1000.0


def rv(i: int, rev: int = 1, ready: bool = True, leaving: bool = False, since: float = 0.0) -> ReplicaView:
    return ReplicaView(id=f"r{i}", node="n", revision=rev, ready=ready, ready_since=since if ready else None,
                       leaving=leaving)


def test_creates_missing_and_removes_extra_unready_first() -> None:
    assert service_step(replicas=3, revision=1, update=UpdatePolicy(), current=[], now=NOW).create == 3
    cur = [rv(1), rv(2, ready=False), rv(3), rv(4)]
    step = service_step(replicas=2, revision=1, update=UpdatePolicy(), current=cur, now=NOW)
    assert step.create == 0 and "r2" in step.remove and len(step.remove) == 2


def test_rolling_update_respects_surge_and_availability() -> None:
    upd = UpdatePolicy(max_surge=1, max_unavailable=0, min_ready=5.0)
    old = [rv(i, rev=1) for i in range(3)]
    first = service_step(replicas=3, revision=2, update=upd, current=old, now=NOW)
    assert first.create == 1 and first.remove == ()
    # A new replica ready but not for min_ready yet: nothing removed.
    young = [*old, rv(9, rev=2, since=NOW - 1)]
    assert service_step(replicas=3, revision=2, update=upd, current=young, now=NOW).remove == ()
    # Ready long enough: one old replica goes.
    grown = [*old, rv(9, rev=2, since=NOW - 6)]
    step = service_step(replicas=3, revision=2, update=upd, current=grown, now=NOW)
    assert len(step.remove) == 1 and step.remove[0].startswith("r") and step.remove[0] != "r9"


def test_percentages() -> None:
    assert resolve_bound("25%", 10, round_up=True) == 3
    assert resolve_bound("25%", 10, round_up=False) == 2
    # both 0 is refused by validation, but percentages of a small count round to 0: never stuck
    assert update_bounds(UpdatePolicy(max_surge="10%", max_unavailable="10%"), 4)[:2] == (1, 0)
    assert update_bounds(UpdatePolicy.model_construct(max_surge=0, max_unavailable=0), 4)[:2] == (1, 0)


def test_drain_replaces_before_removing() -> None:
    cur = [rv(1, leaving=True), rv(2)]
    step = service_step(replicas=2, revision=1, update=UpdatePolicy(), current=cur, now=NOW)
    assert step.create == 1 and step.remove == () and step.evict_if_unplaced == ("r1",)
    cur2 = [*cur, rv(3)]
    assert service_step(replicas=2, revision=1, update=UpdatePolicy(), current=cur2, now=NOW).remove == ("r1",)


replica = st.builds(
    lambda i, rev, ready, age: rv(i, rev=rev, ready=ready, since=NOW - age),
    st.integers(0, 10_000), st.integers(1, 3), st.booleans(), st.floats(0, 20),
)


@settings(max_examples=400)
@given(
    replicas=st.integers(0, 8),
    surge=st.integers(0, 3),
    unavail=st.integers(0, 3),
    current=st.lists(replica, max_size=14, unique_by=lambda r: r.id),
)
def test_invariants(replicas: int, surge: int, unavail: int, current: list[ReplicaView]) -> None:
    # model_construct: the pure step must cope with both 0 (which validation refuses) too
    upd = UpdatePolicy.model_construct(max_surge=surge, max_unavailable=unavail, min_ready=5.0)
    s_eff, u_eff, _ = update_bounds(upd, replicas)
    step = service_step(replicas=replicas, revision=3, update=upd, current=current, now=NOW)
    assert len(set(step.remove)) == len(step.remove)
    assert set(step.remove) <= {r.id for r in current}
    remaining = [r for r in current if r.id not in step.remove]
    new_count = sum(r.revision == 3 for r in remaining) + step.create
    # Never more new replicas than wanted, never above replicas + surge when anything new is created.
    assert new_count <= max(replicas, sum(r.revision == 3 for r in current))
    if step.create:
        assert len(remaining) + step.create <= replicas + s_eff
    # Removing never takes ready replicas below the floor (unless it already was below).
    ready_before = sum(r.ready for r in current)
    ready_after = sum(r.ready for r in remaining)
    if ready_after < ready_before and replicas > 0:
        assert ready_after >= replicas - u_eff
