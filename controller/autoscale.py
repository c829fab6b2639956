"""Pure: how many replicas a service with an ``autoscale`` policy should run (the Kubernetes HPA algorithm).

For each metric the policy sets (``cpu_percent``, ``memory_percent``: average utilisation of the requests;
``rps_per_replica``: new connections per second through the per-node proxies, per replica) the proposal is
``ceil(current * observed / target)``; the largest proposal wins. Then, as the HPA does:

- **tolerance**: a metric whose ``observed / target`` is within 0.9-1.1 proposes no change;
- **missing data**: only ready replicas with a measurement count. When some are missing, the ratio is
  recomputed assuming the missing ones use 100 % of the target on a scale-down and 0 % on a scale-up (not
  ready replicas count as 0 % on a scale-up); if that recomputed ratio is within tolerance or points the
  other way, the metric proposes no change. A metric without any measurement is invalid; when any metric
  is invalid, the service is never scaled down;
- **stabilisation**: every proposal is remembered; the result is ``current`` brought up to the *smallest*
  proposal within ``scale_up_window`` and down to the *largest* proposal within ``scale_down_window``, so a
  short dip never scales down and (with a window) a short spike never scales up. A fresh state (a new
  leader, autoscaling just turned on) counts ``current`` as proposed now, so nothing scales down before a
  full ``scale_down_window`` of measurements;
- finally the result is clamped to ``[min, max]``.

No I/O, no clock: ``now`` is given; the state goes in and comes out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from drover.shared.manifest import AutoscalePolicy

TOLERANCE = 0.1


@dataclass(frozen=True)
class Sample:
    """One measurement: a replica's (``replica`` set; ``cpu_percent``/``memory_percent`` None = no data) or
    one node proxy's connection rate for the service (``node`` set, ``rps``)."""

    replica: str = ""
    ready: bool = True
    cpu_percent: float | None = None
    memory_percent: float | None = None
    node: str = ""
    rps: float | None = None


@dataclass(frozen=True)
class AutoscaleState:
    """What the decision remembers between calls: its recent proposals and its last result."""

    recommendations: tuple[tuple[float, int], ...] = ()  # (time, proposal before stabilisation)
    last_time: float | None = None
    last_desired: int | None = None
    last_reason: str = ""


@dataclass(frozen=True)
class _Proposal:
    metric: str
    replicas: int | None  # None: invalid (no data)
    text: str


def _within(ratio: float) -> bool:
    return abs(ratio - 1.0) <= TOLERANCE + 1e-9


def _utilisation(metric: str, target: float, current: int, values: Sequence[tuple[bool, float | None]]) -> _Proposal:
    """``values``: (ready, percent or None) per replica."""
    ready = [v for ok, v in values if ok and v is not None]
    unready = [v for ok, v in values if not ok and v is not None]
    missing = sum(1 for _, v in values if v is None)
    if not ready:
        return _Proposal(metric, None, f"{metric}: no measurements")
    avg = sum(ready) / len(ready)
    ratio = avg / target
    text = f"{metric} {avg:.0f}% of {target:g}% target"
    if not missing and not unready:
        if _within(ratio):
            return _Proposal(metric, current, text)
        return _Proposal(metric, math.ceil(ratio * len(ready)), text)
    if _within(ratio):
        return _Proposal(metric, current, text)
    # Fill the gaps the conservative way and look again.
    if ratio < 1.0:
        filled = [*ready, *([target] * missing)]  # unready replicas are left out on a scale-down
    else:
        filled = [*ready, *([0.0] * (missing + len(unready)))]
    new_ratio = (sum(filled) / len(filled)) / target
    if _within(new_ratio) or (new_ratio > 1.0) != (ratio > 1.0):
        return _Proposal(metric, current, text + f" ({missing + len(unready)} replicas without data)")
    return _Proposal(metric, math.ceil(new_ratio * len(filled)), text)


def _rate(target: float, current: int, samples: Sequence[Sample]) -> _Proposal:
    rates = [s.rps for s in samples if s.node and s.rps is not None]
    if not rates:
        return _Proposal("rps", None, "rps: no measurements")
    total = sum(rates)
    per = total / max(current, 1)
    text = f"rps {per:.1f}/replica of {target:g} target"
    if current > 0 and _within(per / target):
        return _Proposal("rps", current, text)
    return _Proposal("rps", math.ceil(total / target), text)


def _proposals(policy: AutoscalePolicy, current: int, samples: Sequence[Sample]) -> list[_Proposal]:
    replicas = [s for s in samples if s.replica]
    out: list[_Proposal] = []
    cpu = policy.cpu_percent
    if cpu and cpu > 0:
        out.append(_utilisation("cpu", cpu, current, [(s.ready, s.cpu_percent) for s in replicas]))
    mem = policy.memory_percent
    if mem and mem > 0:
        out.append(_utilisation("memory", mem, current, [(s.ready, s.memory_percent) for s in replicas]))
    rps = policy.rps_per_replica
    if rps and rps > 0:
        out.append(_rate(rps, current, samples))
    return out


def desired_replicas(
    policy: AutoscalePolicy, current: int, samples: Sequence[Sample], now: float, state: AutoscaleState
) -> tuple[int, AutoscaleState, str]:
    """The replica count to run now, the new state, and why (``cpu 143% of 70% target -> 4 replicas``).

    ``policy`` is the spec's ``autoscale`` section; ``current`` the desired replicas now; ``samples`` one per
    replica of the service (with or without data) plus one per node proxy's rate."""
    lo = policy.min
    hi = max(lo, policy.max)
    up_window = max(0.0, policy.scale_up_window)
    down_window = max(0.0, policy.scale_down_window)
    recs = state.recommendations
    if state.last_time is None and not recs:
        recs = ((now, current),)  # a fresh state: hold for a full scale-down window

    proposals = _proposals(policy, current, samples)
    valid = [p for p in proposals if p.replicas is not None]
    if not proposals:
        proposal, why = current, "no metric set"
    elif not valid:
        proposal, why = current, "; ".join(p.text for p in proposals)
    else:
        best = max(valid, key=lambda p: p.replicas or 0)
        proposal = best.replicas if best.replicas is not None else current
        why = best.text
        if len(valid) < len(proposals) and proposal < current:
            invalid = ", ".join(p.metric for p in proposals if p.replicas is None)
            proposal, why = current, f"{why}; not scaling down: no data for {invalid}"

    # Stabilise (as the HPA's behavior windows): current, raised to the lowest proposal of the up window and
    # lowered to the highest proposal of the down window.
    up_rec = proposal
    down_rec = proposal
    for t, r in recs:
        if t > now - up_window:
            up_rec = min(up_rec, r)
        if t > now - down_window:
            down_rec = max(down_rec, r)
    stabilised = min(max(current, up_rec), down_rec)
    desired = min(max(stabilised, lo), hi)

    if desired == current:
        if current < lo or current > hi:
            reason = f"{why} -> {desired} replicas"
        elif proposal > current and proposal > stabilised:
            reason = f"{why} -> {proposal} replicas; held at {current} by the {up_window:g}s scale-up window"
        elif proposal < current and proposal < stabilised:
            reason = f"{why} -> {proposal} replicas; held at {current} by the {down_window:g}s scale-down window"
        else:
            reason = f"{why} -> {current} replicas"
    elif desired != stabilised:
        bound = "min" if desired == lo else "max"
        reason = f"{why} -> {stabilised} replicas, limited to {desired} by {bound}"
    elif desired != proposal:
        reason = f"{why} -> {proposal} replicas; stabilised at {desired}"
    else:
        reason = f"{why} -> {desired} replicas"
    if current < lo and desired == lo and not valid:
        reason = f"below min {lo} -> {lo} replicas"
    elif current > hi and desired == hi and not valid:
        reason = f"above max {hi} -> {hi} replicas"

    keep = max(up_window, down_window)
    kept = tuple((t, r) for t, r in recs if t > now - keep)
    new_state = AutoscaleState(
        recommendations=(*kept, (now, proposal)),
        last_time=now,
        last_desired=desired,
        last_reason=reason,
    )
    return desired, new_state, reason
