"""The hollow node model: starting → running after the delay, removal, revision changes."""

from __future__ import annotations

from drover.agent.hollow import HollowState, converge, next_periodic_beat, promote
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


def test_early_beats_never_push_the_next_periodic_beat_past_an_interval() -> None:
    """A node whose containers change on every tick still beats at least once an interval, and after the
    changes stop its next beat is at most an interval after the last one sent."""
    interval, tick = 1.0, 0.05
    next_beat, last_sent, gaps = 0.3, 0.0, []
    for step in range(200):
        now = step * tick
        changed = step < 100 and step % 7 == 0  # a burst of changes, then quiet
        if changed or now >= next_beat:
            gaps.append(now - last_sent)
            last_sent = now
            next_beat = next_periodic_beat(next_beat, now, interval)
    assert max(gaps) <= interval + tick


def test_periodic_beats_keep_their_stagger_and_restart_after_a_stall() -> None:
    assert next_periodic_beat(10.3, 10.32, 1.0) == 11.3  # on time: the node's offset is kept
    assert next_periodic_beat(10.3, 15.0, 1.0) == 15.0  # after a stall: from now, no burst of catch-up beats
    assert next_periodic_beat(10.3, 10.0, 1.0) == 10.3  # early (a change): schedule unchanged
