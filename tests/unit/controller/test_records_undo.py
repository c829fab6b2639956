"""Undo is safe to retry: the same request is not done twice, and a stale one refuses instead of moving."""

from __future__ import annotations

import pytest

from drover.controller import records
from drover.shared.errors import ConflictError, NotFoundError
from drover.shared.models import RevisionEntry, ServiceRecord, spec_of


def rec_at_2() -> ServiceRecord:
    h = [RevisionEntry(revision=1, spec={"image": "a"}, time=1.0),
         RevisionEntry(revision=2, spec={"image": "b"}, time=2.0)]
    return ServiceRecord(name="web", spec={"image": "b"}, revision=2, history=h)


def test_a_retried_undo_does_not_move_again() -> None:
    first = records.undo(rec_at_2(), "web", None, 3.0, request_id="r1")
    assert first is not None and first.revision == 3 and first.spec == spec_of({"image": "a"})
    assert records.undo(first, "web", None, 4.0, request_id="r1") is None  # the retry: nothing to write
    again = records.undo(first, "web", None, 4.0, request_id="r2")  # a new request does move
    assert again is not None and again.revision == 4 and again.spec == spec_of({"image": "b"})


def test_undo_from_a_revision_no_longer_current_refuses() -> None:
    first = records.undo(rec_at_2(), "web", None, 3.0, from_revision=2)
    assert first is not None and first.revision == 3
    with pytest.raises(ConflictError):
        records.undo(first, "web", None, 4.0, from_revision=2)


def test_undo_stores_the_target_as_a_new_revision_and_a_second_undo_toggles_back() -> None:
    """kubectl: undo of 2 to 1 makes revision 3 (1 leaves the history); undo again makes 4 (spec of 2)."""
    third = records.undo(rec_at_2(), "web", None, 3.0)
    assert third is not None
    assert (third.revision, [h.revision for h in third.history]) == (3, [2, 3])
    assert third.history[-1].change == "undo to revision 1" and third.rollout_state == "progressing"
    fourth = records.undo(third, "web", None, 4.0)
    assert fourth is not None and fourth.spec == spec_of({"image": "b"})
    assert (fourth.revision, [h.revision for h in fourth.history]) == (4, [3, 4])


def test_undo_to_a_given_revision_and_to_an_unknown_one() -> None:
    h = [RevisionEntry(revision=i, spec={"image": f"v{i}"}, time=float(i)) for i in (1, 2, 3)]
    rec = ServiceRecord(name="web", spec={"image": "v3"}, revision=3, history=h, last_good=3)
    back = records.undo(rec, "web", 1, 4.0)
    assert back is not None and back.revision == 4 and back.spec == spec_of({"image": "v1"})
    assert [h.revision for h in back.history] == [2, 3, 4] and back.last_good == 3
    with pytest.raises(NotFoundError, match=r'no revision 1 \(known: 2, 3, 4\)'):
        records.undo(back, "web", 1, 5.0)  # it moved to 4


def test_undo_to_the_spec_already_desired_writes_nothing() -> None:
    assert records.undo(rec_at_2(), "web", 2, 3.0) is None


def test_apply_of_an_old_spec_moves_that_revision_and_its_last_good_mark() -> None:
    h = [RevisionEntry(revision=1, spec={"image": "a"}, time=1.0, result="complete"),
         RevisionEntry(revision=2, spec={"image": "b"}, time=2.0, result="failed")]
    rec = ServiceRecord(name="web", spec={"image": "b"}, revision=2, history=h, last_good=1)
    again = records.new_revision(rec, spec_of({"image": "a"}), "image=a", 3.0)
    assert (again.revision, [h.revision for h in again.history]) == (3, [2, 3])
    assert again.last_good == 3  # the good spec lives on as 3: nothing better to roll back to
    assert again.history[-1].result == "" and again.rollout_state == "progressing"
    kept = records.new_revision(rec, rec.spec, "secret s changed", 3.0, moves=False)
    assert [h.revision for h in kept.history] == [1, 2, 3] and kept.last_good == 1
