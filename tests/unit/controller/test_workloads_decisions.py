"""Pure workload decisions on the controller: sticky homes, who may read a secret."""

from __future__ import annotations

from drover.controller.jobs import job_decision
from drover.controller.secrets import node_may_read, users
from drover.controller.views import job_status
from drover.controller.workloads import (
    JobReplica,
    eligible_nodes,
    global_homes,
    job_creates,
    job_state,
    schedule_tick,
    sticky_homes,
)
from drover.shared.models import (
    AssignedContainer,
    Assignment,
    ContainerState,
    ContainerStatus,
    ServiceRecord,
    spec_of,
)

IMAGE = {"image": "local/busybox:latest"}
VOL = {**IMAGE, "volumes": [{"volume": "v", "container": "/v"}]}


def ac(rid: str, rev: int, service: str = "db", spec: dict[str, object] | None = None) -> AssignedContainer:
    return AssignedContainer(id=rid, service=service, revision=rev, spec=spec or VOL)


def test_sticky_homes_follow_old_replicas() -> None:
    before = {
        "a": Assignment(node="a", containers=[ac("1", 1), ac("2", 1)]),
        "b": Assignment(node="b", containers=[ac("3", 1), ac("x", 1, service="other")]),
        "c": Assignment(node="c", containers=[ac("4", 1)]),
    }
    work = {"a": [ac("1", 1), ac("2", 1), ac("5", 2)], "b": [ac("3", 1)], "c": [ac("4", 1)]}
    # a has one new already (so one more home there), b one, c is not schedulable (its data stays behind).
    assert sticky_homes("db", 2, before, work, {"a", "b"}, 5) == ["a", "b"]
    assert sticky_homes("db", 2, before, work, {"a", "b"}, 1) == ["a"]
    assert sticky_homes("db", 1, before, work, {"a", "b", "c"}, 3) == []


def test_secret_readers_and_users() -> None:
    files = {**IMAGE, "files": [{"path": "/s", "secret": "pw"}]}
    assert node_may_read([ac("1", 1, spec=files)], "pw")
    assert not node_may_read([ac("1", 1, spec=files)], "other") and not node_may_read([], "pw")
    services = {
        "a": ServiceRecord(name="a", spec=files),
        "b": ServiceRecord(name="b", spec={**IMAGE, "files": []}),
        "c": ServiceRecord(name="c", spec=files, deleted=True),
    }
    assert users(services, "pw") == ["a"]


# -- jobs, schedules, global ------------------------------------------------------------------------------


JOB = {**IMAGE, "mode": "job", "restart": "on-failure", "job": {"completions": 3, "parallelism": 2, "backoff_limit": 1}}


def jr(rid: str, state: str, code: int | None = None, restarts: int = 0) -> JobReplica:
    return JobReplica(rid, "n1", state, code, restarts)


def test_job_state_and_creates() -> None:
    job = spec_of(JOB)
    assert job_state(job, []).status == "running" and job_creates(job, []) == 2
    running = [jr("a", "running"), jr("b", "exited", 0)]
    assert job_creates(job, running) == 1  # 2 completions missing, 1 running: parallelism 2
    assert job_creates(job, [jr("a", "running"), jr("b", "running")]) == 0
    done = [jr("a", "exited", 0), jr("b", "exited", 0), jr("c", "exited", 0)]
    assert job_state(job, done).status == "succeeded" and job_creates(job, done) == 0
    # backoff_limit 1: one restart is allowed, a second failure fails the job.
    assert job_state(job, [jr("a", "running", restarts=1)]).status == "running"
    failed = [jr("a", "exited", 2, restarts=1)]
    assert job_state(job, failed).status == "failed" and job_creates(job, failed) == 0


def test_every_ticks_never_overlap_and_collapse() -> None:
    assert schedule_tick("@every 5s", 100.0, 104.9, running=False) is None
    t = schedule_tick("@every 5s", 100.0, 105.0, running=False)
    assert t is not None and (t.action, t.tick) == ("start", 105.0)
    t = schedule_tick("@every 5s", 100.0, 106.0, running=True)
    assert t is not None and t.action == "skip"
    t = schedule_tick("@every 5s", 100.0, 131.0, running=False)  # five ticks missed: only the latest runs
    assert t is not None and (t.tick, t.missed) == (130.0, 5)


def test_cron_tick_collapse() -> None:
    t = schedule_tick("* * * * *", 0.0, 600.5, running=False)
    assert t is not None and t.tick == 600.0 and t.missed == 9


def _svc(spec: dict[str, object], **kw: object) -> ServiceRecord:
    return ServiceRecord(name="j", spec=spec, revision=1, created=100.0, **kw)  # type: ignore[arg-type]


def _status(rid: str, state: ContainerState, code: int | None = None) -> ContainerStatus:
    return ContainerStatus(id=rid, state=state, exit_code=code, revision=1)


def test_scheduled_run_starts_skips_and_removes_the_previous_run() -> None:
    spec = {**JOB, "schedule": "@every 10s", "job": {"completions": 1, "parallelism": 1, "backoff_limit": 0}}
    d = job_decision(_svc(spec), [], lambda n, r: None, now=105.0)
    assert (d.run, d.create, d.record) == (0, 0, {})  # before the first tick
    d = job_decision(_svc(spec), [], lambda n, r: None, now=110.5)
    assert d.run == 1 and d.create == 1 and d.record["job_run"] == 1 and d.record["job_last_tick"] == 110.0
    assert [k for k, _ in d.events] == ["job-run-started"]
    running = _svc(spec, job_run=1, job_last_tick=110.0, job_runs=d.record["job_runs"])
    replica = ("n1", ac("r1-00000001", 1, service="j", spec=spec))
    obs = {"r1-00000001": _status("r1-00000001", ContainerState.RUNNING)}
    d = job_decision(running, [replica], lambda n, r: obs.get(r), now=120.2)
    assert d.create == 0 and d.remove == [] and [k for k, _ in d.events] == ["job-tick-skipped"]
    obs["r1-00000001"] = _status("r1-00000001", ContainerState.EXITED, 0)
    d = job_decision(running.model_copy(update={"job_last_tick": 120.0}), [replica], lambda n, r: obs.get(r), 125.0)
    assert [k for k, _ in d.events] == ["job-succeeded"] and d.record["job_runs"][-1]["result"] == "succeeded"
    assert d.record["rollout_state"] == "complete"
    d = job_decision(running.model_copy(update={"job_last_tick": 120.0}), [replica], lambda n, r: obs.get(r), 130.1)
    assert d.run == 2 and d.remove == [("n1", "r1-00000001")] and d.create == 1


def test_failed_job_stops_retrying() -> None:
    spec = {**JOB, "job": {"completions": 1, "parallelism": 1, "backoff_limit": 0}}
    replica = ("n1", ac("r1-0000000a", 1, service="j", spec=spec))
    d = job_decision(_svc(spec), [replica], lambda n, r: _status(r, ContainerState.EXITED, 3), now=200.0)
    assert d.stop_retrying == [("n1", "r1-0000000a")] and d.create == 0
    assert [k for k, _ in d.events] == ["job-failed"]


def test_a_finished_run_is_never_run_again_when_its_containers_are_gone() -> None:
    """`drover up` stopped (removing containers) and started again: the agents see their job replicas assigned
    and no container. A run that succeeded or failed must not be created anew: its vanished replicas leave the
    assignment, nothing is created, and the status stays the recorded result."""
    spec = {**JOB, "job": {"completions": 2, "parallelism": 2, "backoff_limit": 0}}
    a, b = ("n1", ac("r1-0000000a", 1, service="j", spec=spec)), ("n2", ac("r1-0000000b", 1, service="j", spec=spec))
    done = {r: _status(r, ContainerState.EXITED, 0) for r in ("r1-0000000a", "r1-0000000b")}
    d = job_decision(_svc(spec), [a, b], lambda n, r: done.get(r), now=200.0)
    assert d.record["job_runs"][-1]["result"] == "succeeded"
    finished = _svc(spec, job_run=1, job_runs=d.record["job_runs"])
    # both containers gone: both replicas leave, none is created
    d = job_decision(finished, [a, b], lambda n, r: None, now=300.0)
    assert sorted(d.remove) == [("n1", "r1-0000000a"), ("n2", "r1-0000000b")] and d.create == 0
    assert d.events == [] and "job_runs" not in d.record
    # the agent reports a finished replica without a container as pending: gone as well
    d = job_decision(finished, [a, b], lambda n, r: _status(r, ContainerState.PENDING), now=300.0)
    assert sorted(d.remove) == [("n1", "r1-0000000a"), ("n2", "r1-0000000b")] and d.create == 0
    # one gone, one kept for its logs
    d = job_decision(finished, [a, b], lambda n, r: done.get(r) if r.endswith("a") else None, now=300.0)
    assert d.remove == [("n2", "r1-0000000b")] and d.create == 0 and d.finish == [("n1", "r1-0000000a")]
    rows = [{"id": "r1-0000000a", "node": "n1", "state": "exited", "exit_code": 0, "revision": 1}]
    assert job_status(finished, rows) == job_status(finished, []) == "succeeded"
    # a failed run stays failed and keeps not retrying what is left of it
    failed = _svc(spec, job_run=1, job_runs=[{**d.record.get("job_runs", finished.job_runs)[-1], "result": "failed"}])
    d = job_decision(failed, [a, b], lambda n, r: done.get(r) if r.endswith("a") else None, now=300.0)
    assert d.remove == [("n2", "r1-0000000b")] and d.stop_retrying == [("n1", "r1-0000000a")] and d.create == 0
    assert job_status(failed, []) == "failed"
    # a new revision is a new run: created as usual
    d = job_decision(finished.model_copy(update={"revision": 2}), [], lambda n, r: None, now=300.0)
    assert d.create == 2 and d.remove == []


def test_global_follows_eligible_nodes() -> None:
    nodes = {"a": (True, "a", {"zone": "x"}), "b": (True, "b", {"zone": "y"}), "c": (False, "c", {"zone": "x"})}
    assert eligible_nodes(nodes, spec_of(IMAGE)) == ["a", "b"]
    assert eligible_nodes(nodes, spec_of({**IMAGE, "placement": {"constraints": ["node.labels.zone == x"]}})) == ["a"]
    work = {"a": [ac("1", 2, service="g")], "b": [ac("2", 1, service="g")]}
    assert global_homes("g", 2, ["a", "b"], work, 5) == ["b"]


async def test_secret_read_rechecks_the_stored_assignment_before_refusing() -> None:
    """An agent can ask for a secret of an assignment it watched before the controller took in its own
    write's acknowledgement: the stored assignment decides then, not the stale in-memory view."""
    from types import SimpleNamespace
    from typing import Any, cast

    from drover.controller.secrets import may_read
    from drover.controller.state import Versioned

    files = {**IMAGE, "files": [{"path": "/s", "secret": "pw"}]}
    stored = Assignment(node="n1", generation=1, term=1, containers=[ac("1", 1, spec=files)])
    assignments: dict[str, Versioned[Assignment]] = {}
    refreshed: list[str] = []

    async def refresh(node: str) -> None:
        refreshed.append(node)
        if node == "n1":
            assignments[node] = Versioned(stored, 5)

    ctl = cast(Any, SimpleNamespace(state=SimpleNamespace(assignments=assignments),
                                    writer=SimpleNamespace(refresh=refresh)))
    assert await may_read(ctl, "n1", "pw") and refreshed == ["n1"]
    assert await may_read(ctl, "n1", "pw") and refreshed == ["n1"]  # in memory now: no second read
    assert not await may_read(ctl, "n1", "other")
    assert not await may_read(ctl, "n2", "pw")
