"""The invariant checker over recorded histories: a clean history passes; a duplicated replica, a lost
write, a wrong container count, a late convergence or too many failed requests fail it."""

from __future__ import annotations

import dataclasses

from drover.chaos.checker import Container, Desired, History, Request, Write, check
from drover.chaos.probe import Observation, converged_at, first_converged_after, node_ready_after
from drover.chaos.report import FaultRecord, chain_summary, chains, recovery_by_kind, report_json, summary


def clean() -> History:
    return History(
        writes=[Write(-1, "web", 3, "w0", True), Write(10, "web", 2, "", True), Write(20, "web", 2, "w2", True)],
        desired_before={"db": Desired(1, "")},
        desired_after={"web": Desired(2, "w2"), "db": Desired(1, "")},
        containers=[
            Container("web", "a1", "n1", "drover-web-a1"),
            Container("web", "b2", "n2", "drover-web-b2"),
            Container("db", "c3", "n3", "drover-db-c3"),
        ],
        requests=[Request(float(i), "n1", True) for i in range(200)],
        cut_off={},
        last_fault_end=50.0,
        converged_at={"web": 53.0, "db": 50.0},
    )


def test_a_clean_history_passes() -> None:
    checks = check(clean())
    assert checks.passed, checks
    assert checks.max_converge_s == 3.0
    assert (checks.requests_ok, checks.requests_failed) == (200, 0)


def test_a_duplicated_replica_fails() -> None:
    h = clean()
    h.containers.append(Container("web", "a1", "n3", "drover-web-a1-copy"))
    checks = check(h)
    assert not checks.passed
    assert checks.duplicate_replicas == ["web/a1 runs 2 times: drover-web-a1-copy@n3, drover-web-a1@n1"]
    assert checks.unconverged_services == ["web: 3 running, 2 desired"]


def test_a_lost_acknowledged_write_fails() -> None:
    h = clean()
    h.desired_after["web"] = Desired(3, "w2")  # the acknowledged scale to 2 is gone
    assert check(h).desired_state_lost == ["web: replicas 3 stored, 2 acknowledged"]
    h.desired_after["web"] = Desired(2, "w0")  # the acknowledged spec w2 is gone
    assert check(h).desired_state_lost == ["web: spec w0 stored, w2 acknowledged"]
    del h.desired_after["web"]
    assert not check(h).passed


def test_an_unacknowledged_write_may_or_may_not_have_landed() -> None:
    h = clean()
    h.writes.append(Write(30, "web", 4, "", False))
    assert check(h).desired_state_lost == []
    h.desired_after["web"] = Desired(4, "w2")
    h.containers += [Container("web", "d4", "n3", "x"), Container("web", "e5", "n3", "y")]
    assert check(h).desired_state_lost == []


def test_an_unacknowledged_apply_before_the_last_acknowledged_write_need_not_have_landed() -> None:
    # Seen in a controller-kill run: apply w10 and w11 got "no responders", then a scale was acknowledged;
    # the stored spec is the last acknowledged apply's (w2 here), which is right, not a lost write.
    h = clean()
    h.writes += [Write(30, "web", 2, "w3", False), Write(40, "web", 2, "", True)]
    assert check(h).desired_state_lost == []
    h.desired_after["web"] = Desired(2, "w3")  # or it did land
    assert check(h).desired_state_lost == []
    h.desired_after["web"] = Desired(2, "w0")  # an older acknowledged spec is still a lost write
    assert check(h).desired_state_lost == ["web: spec w0 stored, w2 acknowledged"]


def test_a_request_in_flight_when_its_node_is_cut_off_does_not_count() -> None:
    h = clean()
    h.requests.append(Request(99.8, "n2", False, ended=100.4))  # sent just before the kill at 100.0
    h.requests.append(Request(98.0, "n2", False, ended=98.5))  # failed before it: counts
    h.cut_off = {"n2": [(100.0, 110.0)]}
    assert check(h).requests_failed == 1


def test_the_users_services_keep_their_desired_state() -> None:
    h = clean()
    h.desired_after["db"] = Desired(0, "")
    h.containers = [c for c in h.containers if c.service != "db"]
    assert check(h).desired_state_lost == ["db: replicas 1 before, 0 after"]


def test_convergence_later_than_10s_or_never_fails() -> None:
    h = dataclasses.replace(clean(), converged_at={"web": 61.0, "db": 50.0})
    assert check(h).max_converge_s == 11.0 and not check(h).passed
    h = dataclasses.replace(clean(), converged_at={"web": None, "db": 50.0}, observed_until=110.0)
    assert check(h).unconverged_services == ["web: not converged"]
    assert check(h).max_converge_s == 60.0


def test_requests_to_cut_off_nodes_do_not_count_and_99_percent_must_succeed() -> None:
    h = clean()
    h.requests += [Request(100.0 + i, "n2", False) for i in range(10)]
    assert not check(h).passed  # 200 ok, 10 failed: 95 %
    h.cut_off = {"n2": [(99.0, 120.0)]}
    assert check(h).passed and check(h).requests_failed == 0
    h.requests.append(Request(150.0, "n2", False))  # 1 of 201 failed: still ≥ 99 %
    assert check(h).passed and check(h).requests_failed == 1


def test_observations() -> None:
    ok = {"web": True}
    obs = [
        Observation(1.0, {"n1": True}, ok),
        Observation(2.0, {"n1": False}, ok),
        Observation(3.0, {"n1": True}, {"web": False}),
        Observation(4.0, {"n1": True}, ok),
    ]
    assert first_converged_after(obs, 1.5) == 4.0
    assert node_ready_after(obs, "n1", 1.5) == 3.0
    assert converged_at(obs, "web", 0.0) == 4.0
    assert converged_at(obs, "web", 3.5) == 3.5
    assert converged_at(obs[:3], "web", 0.0) is None


def test_report_has_exactly_the_contract_keys() -> None:
    faults = [FaultRecord(2.0, "pause", "ctl1", 6.0, None, 1.5), FaultRecord(8.0, "agent-kill", "n1", 8.0, "n1", None)]
    data = report_json(7, 60.0, faults, check(clean()))
    assert set(data) == {"seed", "duration_s", "faults", "checks", "passed"}
    assert set(data["faults"][0]) == {"time", "kind", "target"}
    assert set(data["checks"]) == {
        "desired_state_lost", "duplicate_replicas", "unconverged_services", "max_converge_s", "requests_ok",
        "requests_failed",
    }
    assert data["passed"] is True and data["seed"] == 7
    assert recovery_by_kind(faults)["agent-kill"] == {
        "count": 1, "median_s": None, "max_s": None, "unrecovered": 1, "overlapped": 0, "max_alone_s": None,
    }
    text = "\n".join(summary(7, 60.0, faults, check(clean()), ["n"]))
    assert "pause" in text and "PASSED" in text


def test_a_recovery_that_includes_the_next_fault_is_marked_overlapped() -> None:
    faults = [
        FaultRecord(10.0, "pause", "ctl1", 15.0, None, 9.0),  # recovering until 24.0: the kill at 17.0 falls in it
        FaultRecord(17.0, "agent-kill", "n1", 17.0, "n1", 7.0),
        FaultRecord(40.0, "pause", "ctl1", 45.0, None, 1.0),
    ]
    by_kind = recovery_by_kind(faults)
    assert by_kind["pause"] == {
        "count": 2, "median_s": 5.0, "max_s": 9.0, "unrecovered": 0, "overlapped": 1, "max_alone_s": 1.0,
    }
    assert by_kind["agent-kill"]["overlapped"] == 0 and by_kind["agent-kill"]["max_alone_s"] == 7.0
    assert "1 overlapped by another fault" in "\n".join(summary(1, 60.0, faults, check(clean()), []))


def test_faults_that_come_before_the_cluster_recovered_form_one_chain() -> None:
    """The 10-minute run's 256.6 s chain in small: a pause of the only controller, an agent killed during it,
    the same agent cut off as the pause ends, then a nats-kill; each fault's own recovery contains the later
    ones, and the chain's is counted from its last fault's end."""
    faults = [
        FaultRecord(100.0, "pause", "ctl1", 105.8, None, 15.6),  # converged at 121.4
        FaultRecord(100.9, "agent-kill", "n3", 100.9, "n3", 20.5),  # 121.4
        FaultRecord(105.8, "partition", "n3", 110.8, "n3", 10.6),  # 121.4
        FaultRecord(113.4, "nats-kill", "nats-2", 113.4, None, 8.0),  # 121.4
        FaultRecord(130.0, "container-kill", "c1", 130.0, None, 0.9),  # after the chain recovered: alone
        FaultRecord(140.0, "agent-kill", "n1", 140.0, "n1", None),  # never recovered
    ]
    cs = chains(faults)
    assert [len(c.faults) for c in cs] == [4, 1, 1]
    first = cs[0]
    assert first.last_end == 113.4 and round(first.span_s, 1) == 13.4 and first.after_s == 8.0
    assert cs[1].after_s == 0.9 and cs[2].after_s is None
    assert chain_summary(faults) == {
        "chains": 3, "of_several_faults": 1, "longest_span_s": 13.4, "max_after_last_fault_s": None,
    }
    assert chain_summary(faults[:5])["max_after_last_fault_s"] == 8.0
    text = "\n".join(summary(1, 200.0, faults[:5], check(clean()), []))
    assert "chains of overlapping faults: 1 (faults back to back for up to 13.4s)" in text
    assert "from each chain's last fault to convergence: max 8.0s" in text


def test_a_fault_during_another_ones_recovery_joins_its_chain_and_one_after_does_not() -> None:
    faults = [FaultRecord(10.0, "pause", "ctl1", 15.0, None, 9.0),  # recovering until 24.0
              FaultRecord(23.9, "agent-kill", "n1", 23.9, "n1", 2.0),  # joins: 23.9 < 24.0
              FaultRecord(26.0, "nats-kill", "nats-1", 26.0, None, 1.0)]  # 26.0 >= 25.9: a chain of its own
    assert [len(c.faults) for c in chains(faults)] == [2, 1]
    assert chains(faults)[0].after_s == 2.0
