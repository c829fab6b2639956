"""Rebuilding a damaged assignment from the controller's view never stops a healthy container."""

from __future__ import annotations

from drover.controller.repair import rebuild_assignment
from drover.shared.models import AssignedContainer, Assignment, ContainerStatus, RevisionEntry, ServiceRecord


def test_last_good_value_wins_and_generation_rises() -> None:
    good = Assignment(node="n1", generation=4, term=2,
                      containers=[AssignedContainer(id="a", service="web", revision=1, spec={"image": "x"})])
    a = rebuild_assignment("n1", last_good=good, observed={}, services={}, generation_seen=7, term=3)
    assert [c.id for c in a.containers] == ["a"] and a.generation == 8 and a.term == 3


def test_without_a_good_value_the_node_reports_what_runs() -> None:
    web = ServiceRecord(name="web", spec={"image": "v2"}, revision=2,
                        history=[RevisionEntry(revision=1, spec={"image": "v1"}, time=1.0),
                                 RevisionEntry(revision=2, spec={"image": "v2"}, time=2.0)])
    observed = {
        "a": ContainerStatus(id="a", service="web", revision=1),
        "b": ContainerStatus(id="b", service="web", revision=2),
        "c": ContainerStatus(id="c", service="gone", revision=1),  # its service was deleted: not kept
        "d": ContainerStatus(id="d", service="web", revision=9),  # a revision no longer known: not kept
    }
    a = rebuild_assignment("n1", last_good=None, observed=observed, services={"web": web}, generation_seen=3, term=5)
    assert {(c.id, c.revision, c.spec.image) for c in a.containers} == {("a", 1, "v1"), ("b", 2, "v2")}
    assert a.generation == 4
