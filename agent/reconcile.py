"""The agent's pure reconciler: desired containers + observed containers + restart bookkeeping -> actions.

No I/O, no clock, no randomness: ``now`` is passed in. The agent executes the actions (grouped by replica
id, in list order) and records restarts with ``after_restart``.

Restart policy (``spec.restart``): ``always``; ``on-failure`` only when the exit code is not 0; ``never``.
Backoff: the first restart is immediate, then 1 s, 2 s, 4 s … capped at 30 s; a run of at least 10 s
resets it. A replica restarted more than 3 times within its backoff window is in crash-loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from drover.agent.drivers.base import CREATED, RUNNING, Observed
from drover.shared.manifest import ServiceSpec
from drover.shared.models import AssignedContainer

BACKOFF_CAP = 30.0
RESET_AFTER = 10.0  # seconds of uptime that reset the backoff
CRASH_LOOP_RESTARTS = 3
DEFAULT_GRACE = 10.0
CREATE_RETRY_CAP = 30.0


@dataclass(frozen=True)
class RestartState:
    """What the agent remembers about one replica between passes."""

    restarts: int = 0  # in-place restarts made by this agent
    streak: int = 0  # restarts since the replica last stayed up RESET_AFTER seconds
    last_restart: float | None = None
    create_failures: int = 0
    create_blocked_until: float = 0.0  # no create attempt before this time (after a failure)
    message: str = ""  # why the last create failed


# --- actions ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Create:
    assigned: AssignedContainer
    kind: str = "create"

    @property
    def id(self) -> str:
        return self.assigned.id


@dataclass(frozen=True)
class Start:
    """Start a container that was created but never started."""

    id: str
    container_id: str
    kind: str = "start"


@dataclass(frozen=True)
class Restart:
    """Start an exited container again, in place (counts as a restart)."""

    id: str
    container_id: str
    exit_code: int | None = None
    kind: str = "restart"


@dataclass(frozen=True)
class Stop:
    id: str
    container_id: str
    grace: float = DEFAULT_GRACE
    kind: str = "stop"


@dataclass(frozen=True)
class Remove:
    id: str
    container_id: str
    reason: str = ""
    kind: str = "remove"


@dataclass(frozen=True)
class Wait:
    """Nothing to do for this replica before ``until`` (restart backoff or create retry)."""

    id: str
    until: float
    kind: str = "wait"


Action = Create | Start | Restart | Stop | Remove | Wait


# --- policy helpers --------------------------------------------------------------------------------


def restart_policy(spec: ServiceSpec) -> str:
    return spec.restart


def stop_grace(spec: ServiceSpec) -> float:
    return spec.stop_grace


def should_restart(policy: str, exit_code: int | None) -> bool:
    if policy == "always":
        return True
    if policy == "on-failure":
        return exit_code != 0
    return False


def backoff_delay(streak: int) -> float:
    """Delay before the restart that follows ``streak`` quick restarts: 0, 1, 2, 4, … ≤ 30."""
    if streak <= 0:
        return 0.0
    return min(2.0 ** (streak - 1), BACKOFF_CAP)


def effective_streak(state: RestartState, obs: Observed | None, now: float) -> int:
    """The streak, or 0 when the container's current or last run lasted RESET_AFTER seconds."""
    if obs is not None and obs.started_at is not None:
        end = now if obs.state == RUNNING else obs.finished_at
        if end is not None and end - obs.started_at >= RESET_AFTER:
            return 0
    return state.streak


def restart_due(state: RestartState, obs: Observed, now: float) -> float:
    """When an exited container may be restarted."""
    streak = effective_streak(state, obs, now)
    base = obs.finished_at if obs.finished_at is not None else state.last_restart
    if base is None:
        return now
    return base + backoff_delay(streak)


def crash_looping(state: RestartState, obs: Observed | None, now: float) -> bool:
    return effective_streak(state, obs, now) > CRASH_LOOP_RESTARTS


def after_restart(state: RestartState, obs: Observed, now: float) -> RestartState:
    """The bookkeeping after an in-place restart of ``obs``."""
    return replace(
        state,
        restarts=state.restarts + 1,
        streak=effective_streak(state, obs, now) + 1,
        last_restart=now,
    )


def after_create_failure(state: RestartState, now: float, message: str) -> RestartState:
    failures = state.create_failures + 1
    delay = min(2.0 ** (failures - 1), CREATE_RETRY_CAP)
    return replace(state, create_failures=failures, create_blocked_until=now + delay, message=message)


def after_create(state: RestartState) -> RestartState:
    return replace(state, create_failures=0, create_blocked_until=0.0, message="")


# --- the planner -----------------------------------------------------------------------------------


def _rank(obs: Observed) -> tuple[int, float, str]:
    """Which of several containers of one replica to keep: running, then created, then newest."""
    state_rank = 2 if obs.state == RUNNING else 1 if obs.state == CREATED else 0
    return (state_rank, obs.started_at or 0.0, obs.container_id)


def _removal(obs: Observed, grace: float, reason: str) -> list[Action]:
    out: list[Action] = []
    if obs.state in (RUNNING, CREATED):
        out.append(Stop(obs.id, obs.container_id, grace))
    out.append(Remove(obs.id, obs.container_id, reason))
    return out


def plan(
    desired: Sequence[AssignedContainer],
    observed: Sequence[Observed],
    now: float,
    restart_state: Mapping[str, RestartState],
    *,
    graces: Mapping[tuple[str, int], float] | None = None,
) -> list[Action]:
    """Actions that move ``observed`` towards ``desired``.

    For one replica id, removals come before its create (the new container reuses the name).
    ``graces`` gives the stop grace of containers no longer desired, by (replica id, revision).
    """
    graces = graces or {}
    want: dict[str, AssignedContainer] = {}
    for a in desired:
        want.setdefault(a.id, a)

    matching: dict[str, list[Observed]] = {}
    actions: list[Action] = []
    for obs in sorted(observed, key=lambda o: (o.id, o.container_id)):
        w = want.get(obs.id)
        if w is None or w.revision != obs.revision or w.service != obs.service:
            grace = graces.get((obs.id, obs.revision), DEFAULT_GRACE)
            if w is not None and w.service == obs.service:
                grace = min(grace, stop_grace(w.spec))
            reason = "not assigned" if w is None else f"revision {obs.revision} replaced by {w.revision}"
            actions.extend(_removal(obs, grace, reason))
        else:
            matching.setdefault(obs.id, []).append(obs)

    for rid, a in want.items():
        state = restart_state.get(rid, RestartState())
        found = sorted(matching.get(rid, []), key=_rank, reverse=True)
        for dup in found[1:]:
            actions.extend(_removal(dup, stop_grace(a.spec), "duplicate"))
        if not found:
            if a.finished:
                continue  # a job run that is over: its container is gone, and it never runs again
            if now < state.create_blocked_until:
                actions.append(Wait(rid, state.create_blocked_until))
            else:
                actions.append(Create(a))
            continue
        keep = found[0]
        if keep.state == RUNNING:
            continue
        if keep.state == CREATED:
            actions.append(Start(rid, keep.container_id))
            continue
        if not should_restart(restart_policy(a.spec), keep.exit_code):
            continue
        due = restart_due(state, keep, now)
        if now >= due:
            actions.append(Restart(rid, keep.container_id, keep.exit_code))
        else:
            actions.append(Wait(rid, due))
    return actions


def next_wakeup(actions: Sequence[Action]) -> float | None:
    waits = [a.until for a in actions if isinstance(a, Wait)]
    return min(waits) if waits else None


def cpu_quota(a: AssignedContainer | None) -> float | None:
    """The cpu request of a replica's spec (0.0: none), or None when the spec is unknown (restarts re-apply it)."""
    if a is None:
        return None
    return a.spec.resources.cpu
