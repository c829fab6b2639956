"""The pure autoscaling decision (HPA algorithm): hand-built cases and hypothesis properties."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from drover.controller.autoscale import AutoscaleState, Sample, desired_replicas
from drover.shared.manifest import AutoscalePolicy

NOW = 1000.0
# A state that is not fresh (a fresh one holds scale-downs for a window) and has no proposals yet.
WARM = AutoscaleState(last_time=0.0)


def policy(**over: Any) -> AutoscalePolicy:
    base: dict[str, Any] = {"min": 1, "max": 10, "cpu_percent": 70.0, "memory_percent": None,
                            "rps_per_replica": None, "scale_up_window": 0.0, "scale_down_window": 60.0}
    base.update(over)
    return AutoscalePolicy.model_validate(base)


def cpu(*values: float | None, ready: bool = True) -> list[Sample]:
    return [Sample(replica=f"r{i}", ready=ready, cpu_percent=v) for i, v in enumerate(values)]


def test_scales_up_by_the_ratio_with_a_reason() -> None:
    n, state, why = desired_replicas(policy(), 2, cpu(100.0, 100.0), NOW, WARM)
    assert n == math.ceil(2 * 100 / 70) == 3
    assert why == "cpu 100% of 70% target -> 3 replicas"
    assert state.last_desired == 3 and state.last_reason == why and state.recommendations[-1] == (NOW, 3)


def test_clamped_to_max_and_min() -> None:
    n, _, why = desired_replicas(policy(max=4), 2, cpu(500.0, 500.0), NOW, WARM)
    assert n == 4 and "limited to 4 by max" in why
    n, _, _ = desired_replicas(policy(min=2, scale_down_window=0.0), 3, cpu(1.0, 1.0, 1.0), NOW, WARM)
    assert n == 2
    # current outside the bounds (e.g. an apply with replicas: 20) is brought back in, even without data
    n, _, why = desired_replicas(policy(max=5), 20, cpu(*[None] * 20), NOW, WARM)
    assert n == 5 and "above max" in why


def test_within_tolerance_no_change() -> None:
    for v in (63.5, 70.0, 76.9):
        n, _, _ = desired_replicas(policy(scale_down_window=0.0), 4, cpu(v, v, v, v), NOW, WARM)
        assert n == 4
    n, _, _ = desired_replicas(policy(scale_down_window=0.0), 4, cpu(80.0, 80, 80, 80), NOW, WARM)
    assert n == 5


def test_scale_down_waits_for_the_window() -> None:
    p = policy(scale_down_window=60.0)
    # A fresh state holds `current` for a whole window.
    n, state, why = desired_replicas(p, 4, cpu(7.0, 7.0, 7.0, 7.0), NOW, AutoscaleState())
    assert n == 4 and "held at 4 by the 60s scale-down window" in why
    n, state, _ = desired_replicas(p, 4, cpu(7.0, 7.0, 7.0, 7.0), NOW + 30, state)
    assert n == 4
    n, state, why = desired_replicas(p, 4, cpu(7.0, 7.0, 7.0, 7.0), NOW + 61, state)
    assert n == 1, why


def test_scale_down_takes_the_highest_recent_proposal() -> None:
    p = policy(scale_down_window=60.0)
    _, state, _ = desired_replicas(p, 6, cpu(*[70.0] * 6), NOW, WARM)  # proposes 6
    _, state, _ = desired_replicas(p, 6, cpu(*[35.0] * 6), NOW + 10, state)  # proposes 3
    n, state, _ = desired_replicas(p, 6, cpu(*[12.0] * 6), NOW + 20, state)  # proposes 2
    assert n == 6
    n, state, _ = desired_replicas(p, 6, cpu(*[12.0] * 6), NOW + 65, state)  # 6 left the window; 3 is the max
    assert n == 3


def test_scale_up_window_takes_the_lowest_recent_proposal() -> None:
    p = policy(scale_up_window=30.0, scale_down_window=0.0)
    # Without any recent proposal, a scale-up is immediate (as the HPA's, whatever the window).
    n, _, _ = desired_replicas(p, 2, cpu(140.0, 140.0), NOW, WARM)
    assert n == 4
    # A fresh state counts `current` as proposed now: a spike must last the whole window.
    n, state, why = desired_replicas(p, 2, cpu(140.0, 140.0), NOW, AutoscaleState())
    assert n == 2 and "held at 2 by the 30s scale-up window" in why
    n, state, _ = desired_replicas(p, 2, cpu(90.0, 90.0), NOW + 10, state)  # proposes 3
    assert n == 2
    n, state, _ = desired_replicas(p, 2, cpu(140.0, 140.0), NOW + 31, state)  # window: 4, 3, 4 -> 3
    assert n == 3


def test_missing_data_never_scales_down() -> None:
    p = policy(scale_down_window=0.0)
    # One replica measured low, two without data: they are assumed at 100% of the target -> (10+70+70)/3 = 50%
    n, _, _ = desired_replicas(p, 3, cpu(10.0, None, None), NOW, WARM)
    assert n == 3  # ceil(3 * 50/70) = 3, where the measured 10% alone would have said 1
    # No data at all: no change.
    n, _, why = desired_replicas(p, 3, cpu(None, None, None), NOW, WARM)
    assert n == 3 and "no measurements" in why


def test_missing_and_unready_count_as_zero_on_scale_up() -> None:
    p = policy()
    # 100% on one of three (two just started, no data): (100+0+0)/3 = 33% < 70% -> direction flips -> hold
    n, _, _ = desired_replicas(p, 3, cpu(100.0, None, None), NOW, WARM)
    assert n == 3
    # 200% on one, one unready measured high: the unready counts as 0 -> (200+0)/2 = 100% -> ceil(2*100/70)=3
    samples = [Sample("a", True, 200.0), Sample("b", False, 500.0)]
    n, _, _ = desired_replicas(p, 2, samples, NOW, WARM)
    assert n == 3


def test_an_invalid_metric_blocks_scale_down_but_not_up() -> None:
    p = policy(memory_percent=50.0, scale_down_window=0.0)
    n, _, why = desired_replicas(p, 4, cpu(5.0, 5.0, 5.0, 5.0), NOW, WARM)  # memory: no data
    assert n == 4 and "no data for memory" in why
    n, _, _ = desired_replicas(p, 2, cpu(140.0, 140.0), NOW, WARM)
    assert n == 4


def test_the_largest_metric_wins() -> None:
    p = policy(cpu_percent=50.0, memory_percent=50.0, scale_down_window=0.0)
    samples = [Sample(f"r{i}", True, cpu_percent=10.0, memory_percent=150.0) for i in range(2)]
    n, _, why = desired_replicas(p, 2, samples, NOW, WARM)
    assert n == 6 and why.startswith("memory 150% of 50% target")


def test_request_rate_per_replica() -> None:
    p = policy(cpu_percent=None, rps_per_replica=10.0, scale_down_window=0.0)
    nodes = [Sample(node="n1", rps=35.0), Sample(node="n2", rps=20.0)]
    n, _, why = desired_replicas(p, 2, nodes, NOW, WARM)
    assert n == 6 and why.startswith("rps 27.5/replica of 10 target")
    n, _, _ = desired_replicas(p, 2, [Sample(node="n1", rps=0.0)], NOW, WARM)
    assert n == 1
    n, _, _ = desired_replicas(p, 2, [], NOW, WARM)  # no node reported a rate
    assert n == 2


# --- properties -------------------------------------------------------------------------------------------

percents = st.one_of(st.none(), st.floats(min_value=0.0, max_value=1000.0, allow_nan=False))
sample_lists = st.lists(
    st.builds(Sample, replica=st.sampled_from(["a", "b", "c", "d", "e", "f"]), ready=st.booleans(),
              cpu_percent=percents, memory_percent=percents),
    max_size=8,
)
policies = st.builds(
    lambda lo, span, cpu, mem, up, down: policy(min=lo, max=max(1, lo + span), cpu_percent=cpu, memory_percent=mem,
                                                scale_up_window=up, scale_down_window=down),
    st.integers(0, 5), st.integers(0, 8),
    st.one_of(st.none(), st.floats(1.0, 200.0)), st.one_of(st.none(), st.floats(1.0, 200.0)),
    st.sampled_from([0.0, 5.0, 30.0]), st.sampled_from([0.0, 5.0, 60.0]),
)


@settings(max_examples=300, deadline=None)
@given(policies, st.integers(0, 20), st.lists(sample_lists, min_size=1, max_size=6),
       st.lists(st.floats(0.0, 40.0), min_size=6, max_size=6))
def test_always_within_bounds(p: AutoscalePolicy, current: int, rounds: list[list[Sample]], gaps: list[float]) -> None:
    state = AutoscaleState()
    now = NOW
    for samples, gap in zip(rounds, gaps, strict=False):
        now += gap
        n, state, why = desired_replicas(p, current, samples, now, state)
        assert p.min <= n <= p.max, why
        current = n


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 8), st.floats(0.9, 1.1), st.sampled_from([0.0, 5.0, 60.0]),
       st.lists(st.integers(1, 12), max_size=5))
def test_never_changes_within_tolerance(current: int, ratio: float, down: float, history: list[int]) -> None:
    p = policy(min=1, max=12, cpu_percent=50.0, scale_down_window=down, scale_up_window=down)
    state = AutoscaleState(recommendations=tuple((NOW - i, r) for i, r in enumerate(history)), last_time=NOW - 1)
    samples = [Sample(f"r{i}", True, 50.0 * ratio) for i in range(current)]
    n, _, _ = desired_replicas(p, current, samples, NOW, state)
    assert n == current


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 10), st.integers(1, 10), st.floats(0.0, 59.0), st.floats(0.0, 300.0))
def test_no_scale_down_below_a_proposal_within_the_window(current: int, earlier: int, age: float, low: float) -> None:
    p = policy(min=1, max=10, cpu_percent=70.0, scale_down_window=60.0)
    state = AutoscaleState(recommendations=((NOW - age, earlier),), last_time=NOW - age)
    n, _, _ = desired_replicas(p, current, cpu(*[low] * current), NOW, state)
    assert n >= min(current, earlier)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 9), st.integers(1, 10), st.floats(0.01, 29.0), st.floats(0.0, 1000.0))
def test_no_scale_up_above_a_proposal_within_the_up_window(current: int, earlier: int, age: float, high: float) -> None:
    p = policy(min=1, max=10, cpu_percent=70.0, scale_up_window=30.0, scale_down_window=0.0)
    state = AutoscaleState(recommendations=((NOW - age, earlier),), last_time=NOW - age)
    n, _, _ = desired_replicas(p, current, cpu(*[high] * current), NOW, state)
    assert n <= max(current, earlier)
