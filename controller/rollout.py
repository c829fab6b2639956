"""Pure per-service decision: how many replicas of the current revision to create and which to remove.

It covers creation, scaling, rolling from one revision to the next within ``max_surge``/``max_unavailable``
(gated on readiness held for ``min_ready``), and moving replicas off draining nodes. It never places: the
scheduler decides where the created replicas go.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from drover.shared.manifest import ServiceSpec, UpdatePolicy


@dataclass(frozen=True)
class ReplicaView:
    id: str
    node: str
    revision: int
    ready: bool
    ready_since: float | None  # when it was last seen becoming ready (None = not ready)
    leaving: bool = False  # on a draining node: to be replaced, then removed
    state: str = "running"
    restarts: int = 0  # restarts observed on this placement (not carried from earlier placements)


@dataclass(frozen=True)
class Step:
    create: int = 0
    remove: tuple[str, ...] = ()
    # replicas that may be removed only if the scheduler cannot place their replacements (drain eviction)
    evict_if_unplaced: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())


def resolve_bound(value: int | str, replicas: int, *, round_up: bool) -> int:
    """``max_surge``/``max_unavailable``: an integer, or a percentage of replicas (surge rounds up,
    unavailable rounds down, as Kubernetes does)."""
    if isinstance(value, str) and value.endswith("%"):
        frac = float(value[:-1]) / 100.0 * replicas
        return math.ceil(frac) if round_up else math.floor(frac)
    return max(0, int(value))


def update_bounds(update: UpdatePolicy, replicas: int) -> tuple[int, int, float]:
    surge = resolve_bound(update.max_surge, replicas, round_up=True)
    unavailable = resolve_bound(update.max_unavailable, replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        surge = 1  # both zero could never make progress (percentages of a small count can round to 0)
    return surge, unavailable, update.min_ready


def _available(r: ReplicaView, now: float, min_ready: float) -> bool:
    return r.ready and r.ready_since is not None and now - r.ready_since >= min_ready


def _unready_first(rs: Sequence[ReplicaView]) -> list[ReplicaView]:
    return sorted(rs, key=lambda r: (r.ready, r.ready_since or 0.0, r.id))


def service_step(
    *,
    replicas: int,
    revision: int,
    update: UpdatePolicy,
    current: Sequence[ReplicaView],
    now: float,
) -> Step:
    """Decide the next step for one service from its replicas (all nodes, lost ones already dropped)."""
    surge, max_unavail, min_ready = update_bounds(update, replicas)
    if replicas == 0:
        return Step(remove=tuple(r.id for r in current))

    new = [r for r in current if r.revision == revision and not r.leaving]
    old = [r for r in current if r.revision != revision and not r.leaving]
    leaving = [r for r in current if r.leaving]
    remove: list[str] = []

    # Too many of the current revision (scale down): drop the unready ones first.
    if len(new) > replicas:
        extra = _unready_first(new)[: len(new) - replicas]
        remove += [r.id for r in extra]
        new = [r for r in new if r.id not in set(remove)]

    total = len(new) + len(old) + len(leaving)
    want_new = replicas - len(new)
    create = max(0, min(want_new, replicas + surge - total)) if (old or leaving) else max(0, want_new)

    # Old revisions: remove unready ones freely, ready ones only while availability stays >= the floor.
    min_available = replicas - max_unavail
    available = sum(_available(r, now, min_ready) for r in new) + sum(r.ready for r in old)
    available += sum(r.ready for r in leaving)
    # Excess old beyond what the rollout still needs (e.g. scaled down mid-rollout).
    for r in _unready_first(old):
        if not r.ready:
            remove.append(r.id)
        elif available - 1 >= min_available:
            remove.append(r.id)
            available -= 1
    # Leaving replicas (drain): once their replacements are available, or right away if unready.
    evict: list[str] = []
    for r in _unready_first(leaving):
        if not r.ready:
            remove.append(r.id)
        elif available - 1 >= min_available:
            remove.append(r.id)
            available -= 1
        else:
            evict.append(r.id)
    return Step(create=create, remove=tuple(remove), evict_if_unplaced=tuple(evict))


FAILING_RESTARTS = 2  # a new-revision replica restarted this often has failed the rollout


@dataclass(frozen=True)
class Verdict:
    """What changed in a rollout: its new state, and the revision to return to when rolling back."""

    state: str  # progressing | complete | failed | rolled-back
    reason: str = ""
    progress: int = 0
    progress_at: float = 0.0
    rollback_to: int | None = None


def judge_rollout(
    *,
    revision: int,
    replicas: int,
    spec: ServiceSpec,
    state: str,
    paused: bool,
    last_good: int,
    progress: int,
    progress_at: float,
    current: Sequence[ReplicaView],
    now: float,
) -> Verdict | None:
    """Judge a progressing rollout: complete, failed (or rolled back), progressed, or nothing new (None)."""
    if state != "progressing" or paused:
        return None
    _, _, min_ready = update_bounds(spec.update, replicas)
    deadline = spec.update.progress_deadline
    new = [r for r in current if r.revision == revision and not r.leaving]
    old = [r for r in current if r.revision != revision]
    available = sum(_available(r, now, min_ready) for r in new)
    if not old and len(new) == replicas and available == replicas:
        return Verdict("complete", progress=available, progress_at=now)
    restart = spec.restart
    failing = [
        r
        for r in new
        if r.state == "crash-loop" or r.restarts >= FAILING_RESTARTS or (r.state == "exited" and restart == "never")
    ]
    progressed = available > progress
    since = now if progressed else progress_at
    reason = ""
    if failing:
        r = failing[0]
        reason = f"revision {revision} failing: replica {r.id} on {r.node} is {r.state} after {r.restarts} restart(s)"
    elif now - since > deadline:
        reason = f"revision {revision} made no progress within progress_deadline ({deadline:g}s)"
    if reason:
        if spec.update.auto_rollback and last_good and last_good != revision:
            return Verdict("rolled-back", reason, rollback_to=last_good)
        return Verdict("failed", reason)
    if progressed:
        return Verdict("progressing", progress=available, progress_at=now)
    return None
