"""Pure workload decisions on the controller: sticky homes, who may read a secret."""

from __future__ import annotations

from drover.controller.secrets import node_may_read, users
from drover.controller.workloads import sticky_homes
from drover.shared.models import AssignedContainer, Assignment, ServiceRecord

VOL = {"volumes": [{"volume": "v", "container": "/v"}]}


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
    files = {"files": [{"path": "/s", "secret": "pw"}]}
    assert node_may_read([ac("1", 1, spec=files)], "pw")
    assert not node_may_read([ac("1", 1, spec=files)], "other") and not node_may_read([], "pw")
    services = {
        "a": ServiceRecord(name="a", spec=files),
        "b": ServiceRecord(name="b", spec={"files": []}),
        "c": ServiceRecord(name="c", spec=files, deleted=True),
    }
    assert users(services, "pw") == ["a"]
