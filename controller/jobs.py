"""The pure decision for one ``mode: job`` service in a reconcile pass.

A job's replicas belong to a run (their id is ``r<run>-<random>``). Without a ``schedule`` there is one run
per revision (run 1); with one, each due tick starts the next run unless the current one is still going (the
tick is skipped, with an event: runs never overlap). Containers of earlier runs or revisions are kept, for
``logs``, until the next run starts. A run that exceeded its ``backoff_limit`` gets ``restart: never`` on its
replicas so their agents stop retrying them and their logs stay. What the record must remember (the current
run, the last tick, recent runs and their results) is returned as fields to write.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from drover.controller.workloads import JobReplica, job_creates, job_state, run_of, schedule_tick
from drover.shared.models import AssignedContainer, ContainerState, ContainerStatus, ServiceRecord, spec_of

RUNS_KEPT = 10
FINISHED = ("succeeded", "failed")  # results of a run that is over


@dataclass
class JobDecision:
    run: int  # the run whose replicas are created now (0: none yet)
    create: int = 0
    remove: list[tuple[str, str]] = field(default_factory=list)  # (node, replica id)
    stop_retrying: list[tuple[str, str]] = field(default_factory=list)  # (node, replica id)
    finish: list[tuple[str, str]] = field(default_factory=list)  # (node, replica id): its run is over
    record: dict[str, Any] = field(default_factory=dict)  # ServiceRecord fields to write
    events: list[tuple[str, str]] = field(default_factory=list)  # (kind, message)


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t))


def job_decision(
    svc: ServiceRecord,
    replicas: Sequence[tuple[str, AssignedContainer]],
    observed: Callable[[str, str], ContainerStatus | None],
    now: float,
) -> JobDecision:
    schedule = svc.spec.schedule
    run = svc.job_run if schedule else max(svc.job_run, 1)
    runs = [dict(r) for r in svc.job_runs]
    current: list[JobReplica] = []
    missing: list[tuple[str, str]] = []  # (node, replica id) of this run that no container stands for
    where: dict[str, str] = {}
    earlier: list[tuple[str, str]] = []
    for node, c in replicas:
        if c.revision != svc.revision or run_of(c.id) != run:
            earlier.append((node, c.id))
            continue
        obs = observed(node, c.id)
        if obs is None or (obs.state == ContainerState.PENDING and not obs.container_id):
            missing.append((node, c.id))  # no container stands for it (the node has none, or has not said)
        state = str(obs.state) if obs is not None else "pending"
        current.append(JobReplica(c.id, node, state, obs.exit_code if obs else None, obs.restarts if obs else 0))
        where[c.id] = node
    out = JobDecision(run=run)
    st = job_state(svc.spec, current)
    if schedule:
        busy = run > 0 and st.status == "running"
        tick = schedule_tick(schedule, svc.job_last_tick or svc.created, now, running=busy)
        if tick is not None:
            out.record["job_last_tick"] = tick.tick
            if tick.action == "skip":
                why = f"tick at {_clock(tick.tick)} skipped: run {run} is still running"
                out.events.append(("job-tick-skipped", why))
            else:
                run += 1
                out.run = run
                runs = [*runs, {"run": run, "revision": svc.revision, "tick": tick.tick, "started": now,
                                "result": "", "finished": 0.0}][-RUNS_KEPT:]
                out.record.update({"job_run": run, "job_runs": runs, "rollout_state": "progressing"})
                out.events.append(("job-run-started", f"run {run} started (tick at {_clock(tick.tick)})"))
                earlier += [(r.node, r.id) for r in current]
                current = []
                missing = []
                st = job_state(svc.spec, current)
    # Containers of earlier runs stay for logs until the next run starts (a new revision is a new run too).
    if run > 0 and (current or out.record.get("job_run") or not schedule):
        out.remove = earlier
    if run == 0:
        return out
    def this(r: dict[str, Any]) -> bool:  # the entry of this run (without a schedule: of this revision)
        return bool(r.get("run") == run and (schedule or r.get("revision") == svc.revision))

    if not any(this(r) for r in runs):
        runs = [*runs, {"run": run, "revision": svc.revision, "started": now, "result": "", "finished": 0.0}]
        out.record["job_runs"] = runs[-RUNS_KEPT:]
    recorded = next((r.get("result") for r in runs if this(r)), "")
    if recorded in FINISHED:
        # A finished run never runs again: a replica whose container is gone (its node lost it, or `drover up`
        # removed it when it stopped) leaves the assignment, where its agent would otherwise create it anew.
        out.remove = [*out.remove, *missing]
        kept = [(r.node, r.id) for r in current if (r.node, r.id) not in missing]
        out.finish = kept  # … and its agent is told so, in case the container vanishes before we see it
        if recorded == "failed":
            out.stop_retrying = kept
        return out
    if st.status != "running" and recorded != st.status:
        runs = [{**r, "result": st.status, "finished": now} if this(r) else r for r in runs]
        out.record["job_runs"] = runs[-RUNS_KEPT:]
        # A finished run is a settled service: the controller need not re-plan it every second.
        out.record["rollout_state"] = "complete" if st.status == "succeeded" else "failed"
        detail = f"{st.succeeded} completion(s), {st.failures} failure(s)"
        out.events.append((f"job-{st.status}", f"run {run} {st.status}: {detail}"))
    if st.status in FINISHED:  # over now: its agents must never create these again
        out.finish = [(r.node, r.id) for r in current if (r.node, r.id) not in missing]
    if st.status == "failed":
        out.stop_retrying = [(r.node, r.id) for r in current]
    out.create = job_creates(svc.spec, current)
    return out


def finished(c: AssignedContainer) -> AssignedContainer:
    """The replica marked as of a run that is over (its agent never creates it again)."""
    return c if c.finished else c.model_copy(update={"finished": True})


def stopped(c: AssignedContainer) -> AssignedContainer:
    """The replica with ``restart: never`` (its agent stops retrying it; its container and logs stay)."""
    if c.spec.restart == "never":
        return c
    return c.model_copy(update={"spec": spec_of({**c.spec.stored, "restart": "never"})})
