"""The hollow node model: starting → running after the delay, removal, revision changes."""

from __future__ import annotations

from drover.agent.hollow import HollowState, converge, promote
from drover.shared.models import AssignedContainer, ContainerStatus, Heartbeat

SPEC = {"image": "x", "ports": [{"name": "http", "container": 80}]}


def ac(rid: str, revision: int = 1, service: str = "web") -> AssignedContainer:
    return AssignedContainer(id=rid, service=service, revision=revision, spec=SPEC)


def test_replicas_start_after_the_delay_and_go_when_unassigned() -> None:
    st = HollowState()
    wanted = [ac("a"), ac("b")]
    assert converge(st, wanted, 100.0, 2.0) == []
    assert {s["state"] for s in st.statuses()} == {"starting"} and st.next_due == 102.0
    assert promote(st, {a.id: a for a in wanted}, 101.0) == []
    assert sorted(promote(st, {a.id: a for a in wanted}, 102.5)) == ["a", "b"]
    assert all(s["state"] == "running" and s["ready"] and s["host_port"] for s in st.statuses())
    assert st.next_due is None
    converge(st, [ac("b")], 103.0, 2.0)
    assert [s["id"] for s in st.statuses()] == ["b"]


def test_no_delay_runs_at_once_and_a_new_revision_starts_again() -> None:
    st = HollowState()
    assert converge(st, [ac("a")], 1.0, 0.0) == ["a"]
    assert converge(st, [ac("a")], 2.0, 0.0) == []  # unchanged: nothing restarts
    assert converge(st, [ac("a", revision=2)], 3.0, 0.0) == ["a"]
    assert st.statuses()[0]["revision"] == 2


def test_statuses_are_valid_heartbeat_records() -> None:
    st = HollowState()
    converge(st, [ac("a"), ac("b", service="db")], 1.0, 5.0)
    promote(st, {"a": ac("a")}, 7.0)
    hb = Heartbeat.from_dict({"node": "n", "containers": st.statuses()})
    states = {c.id: c.state for c in hb.containers}
    assert states == {"a": "running", "b": "starting"}
    assert isinstance(hb.containers[0], ContainerStatus)
