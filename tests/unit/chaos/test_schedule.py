"""The fault schedule: every kind in any run of 60 s or more, whatever the seed; deterministic; faults
healed before the run ends; one fault per slot, sometimes two at once."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from drover.chaos.schedule import HELD, KINDS, make_schedule, parse_kinds


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**31),
    duration=st.floats(min_value=60, max_value=3600),
    interval=st.floats(min_value=0.5, max_value=120),
)
def test_every_kind_at_least_once_in_60s_or_more(seed: int, duration: float, interval: float) -> None:
    plan = make_schedule(seed, duration, interval, list(KINDS))
    assert {p.kind for p in plan} == set(KINDS)
    assert all(0 < p.at and p.ends <= duration for p in plan)
    assert all((p.hold > 0) == (p.kind in HELD) for p in plan)
    assert [p.at for p in plan] == sorted(p.at for p in plan)


@given(seed=st.integers(min_value=0, max_value=2**31))
def test_same_seed_same_schedule(seed: int) -> None:
    assert make_schedule(seed, 90, 5, list(KINDS)) == make_schedule(seed, 90, 5, list(KINDS))


def test_different_seeds_differ_and_sometimes_two_at_once() -> None:
    plans = [make_schedule(seed, 60, 5, list(KINDS)) for seed in range(30)]
    assert len({tuple(p) for p in plans}) == 30
    overlapping = 0
    for plan in plans:
        for a, b in itertools.pairwise(plan):
            if b.at < a.at + max(a.hold, 1.0):
                overlapping += 1
    assert overlapping > 0
    # …but one fault per slot is the rule: at most two start within any one interval.
    for plan in plans:
        for p in plan:
            assert sum(1 for q in plan if p.at <= q.at < p.at + 2.5) <= 3


def test_chosen_kinds_only() -> None:
    plan = make_schedule(3, 60, 5, ["pause", "agent-kill"])
    assert {p.kind for p in plan} == {"pause", "agent-kill"}
    assert make_schedule(3, 60, 5, []) == []


def test_parse_kinds() -> None:
    assert parse_kinds("all") == (list(KINDS), [])
    assert parse_kinds("") == (list(KINDS), [])
    assert parse_kinds("pause, partition,pause") == (["pause", "partition"], [])
    assert parse_kinds("pause,nope") == (["pause"], ["nope"])
