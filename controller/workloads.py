"""Pure decisions for the workload modes and for replicas that keep their node (volumes).

No I/O, no clock: the controller's plan calls these with plain data.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass

from drover.shared.manifest import ServiceSpec
from drover.shared.models import AssignedContainer, Assignment
from drover.shared.workloads import JobSpec, next_tick, parse_schedule


def sticky_homes(
    service: str,
    revision: int,
    before: Mapping[str, Assignment],
    work: Mapping[str, Sequence[AssignedContainer]],
    schedulable: Set[str],
    count: int,
) -> list[str]:
    """The nodes (one entry per replica, at most ``count``) that new replicas of a service with volumes should
    go to: a node that held a replica of another revision before this pass, once for each such replica not yet
    matched by one of ``revision`` there. A node that cannot take replicas now (lost, cordoned, draining) is no
    home: that data stays behind (the caller reports it)."""
    homes: list[str] = []
    for node in sorted(before):
        if node not in schedulable:
            continue
        old = sum(1 for c in before[node].containers if c.service == service and c.revision != revision)
        new = sum(1 for c in work.get(node, ()) if c.service == service and c.revision == revision)
        homes.extend([node] * max(0, old - new))
    return homes[:count]


# -- global: one replica on every eligible node -----------------------------------------------------------


def eligible_nodes(nodes: Mapping[str, tuple[bool, str, Mapping[str, str]]], spec: ServiceSpec) -> list[str]:
    """The nodes a ``mode: global`` service runs on: those ready for placement (not lost, cordoned or draining)
    that meet its constraints. ``nodes``: name -> (schedulable, name, labels)."""
    constraints = spec.placement.parsed_constraints()
    return sorted(
        name for name, (ok, _, labels) in nodes.items()
        if ok and all(c.matches(name, labels) for c in constraints)
    )


def global_homes(service: str, revision: int, eligible: Sequence[str],
                 work: Mapping[str, Sequence[AssignedContainer]], count: int) -> list[str]:
    """Eligible nodes without a replica of ``revision`` yet, at most ``count`` (one new replica each)."""
    missing = [n for n in eligible
               if not any(c.service == service and c.revision == revision for c in work.get(n, ()))]
    return missing[:count]


# -- jobs -------------------------------------------------------------------------------------------------

JOB_ID = re.compile(r"r(\d+)-[0-9a-f]+")


def job_replica_id(run: int, rng: random.Random) -> str:
    """A job replica's id carries its run: ``r<run>-<random>``."""
    return f"r{run}-{rng.getrandbits(32):08x}"


def run_of(replica_id: str) -> int:
    m = JOB_ID.fullmatch(replica_id)
    return int(m.group(1)) if m else 0


@dataclass(frozen=True)
class JobReplica:
    id: str
    node: str
    state: str  # a ContainerState value, "pending" when not reported yet
    exit_code: int | None = None
    restarts: int = 0


@dataclass(frozen=True)
class JobState:
    status: str  # running | succeeded | failed
    succeeded: int
    failures: int
    active: int


def job_params(spec: ServiceSpec) -> tuple[int, int, int]:
    job = spec.job or JobSpec()  # set on every mode: job spec; the defaults for any other
    return job.completions, job.parallelism, job.backoff_limit


def job_state(spec: ServiceSpec, replicas: Sequence[JobReplica]) -> JobState:
    """Where one run of a job stands. A completion is a container that exited 0; a failure is each restart
    of a container and each container that exited non-zero and is not restarted; more failures than
    ``backoff_limit`` fail the run."""
    completions, _, backoff = job_params(spec)
    done = sum(1 for r in replicas if r.state == "exited" and r.exit_code == 0)
    failed_now = sum(1 for r in replicas if r.state == "exited" and r.exit_code not in (0, None))
    failures = sum(r.restarts for r in replicas) + failed_now
    active = sum(1 for r in replicas if r.state != "exited")
    if done >= completions:
        return JobState("succeeded", done, failures, active)
    if failures > backoff:
        return JobState("failed", done, failures, active)
    return JobState("running", done, failures, active)


def job_creates(spec: ServiceSpec, replicas: Sequence[JobReplica]) -> int:
    """New containers a running job needs now: up to ``parallelism`` at a time, never more than the
    completions still missing (a container that failed is retried in place by its agent, not replaced)."""
    st = job_state(spec, replicas)
    if st.status != "running":
        return 0
    completions, parallelism, _ = job_params(spec)
    unfinished = sum(1 for r in replicas if not (r.state == "exited" and r.exit_code == 0))
    return max(0, min(parallelism, completions - st.succeeded) - unfinished)


@dataclass(frozen=True)
class Tick:
    action: str  # "start" (a new run) | "skip" (a run is still going)
    tick: float  # the tick handled (unix time)
    missed: int = 0  # earlier ticks that passed unhandled (the controller was away)


def schedule_tick(schedule: str, last: float, now: float, running: bool) -> Tick | None:
    """The tick due at ``now`` after the last one handled at ``last`` (None: none due). Ticks missed while
    nobody looked collapse into the latest; a run still going skips it (runs never overlap)."""
    due = next_tick(schedule, last)
    if due > now:
        return None
    missed = 0
    kind, period = parse_schedule(schedule)
    if kind == "every":
        steps = int((now - due) // period)
        due, missed = due + steps * period, steps
    else:
        for _ in range(10_000):
            following = next_tick(schedule, due)
            if following > now:
                break
            due, missed = following, missed + 1
    return Tick("skip" if running else "start", due, missed)
