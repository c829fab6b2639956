"""Undo is safe to retry: the same request is not done twice, and a stale one refuses instead of moving."""

from __future__ import annotations

import pytest

from drover.controller import records
from drover.shared.errors import ConflictError
from drover.shared.models import RevisionEntry, ServiceRecord


def rec_at_2() -> ServiceRecord:
    h = [RevisionEntry(revision=1, spec={"image": "a"}, time=1.0),
         RevisionEntry(revision=2, spec={"image": "b"}, time=2.0)]
    return ServiceRecord(name="web", spec={"image": "b"}, revision=2, history=h)


def test_a_retried_undo_does_not_move_again() -> None:
    first = records.undo(rec_at_2(), "web", None, 3.0, request_id="r1")
    assert first is not None and first.revision == 1
    assert records.undo(first, "web", None, 4.0, request_id="r1") is None  # the retry: nothing to write
    again = records.undo(first, "web", None, 4.0, request_id="r2")  # a new request does move
    assert again is not None and again.revision == 2


def test_undo_from_a_revision_no_longer_current_refuses() -> None:
    first = records.undo(rec_at_2(), "web", None, 3.0, from_revision=2)
    assert first is not None and first.revision == 1
    with pytest.raises(ConflictError):
        records.undo(first, "web", None, 4.0, from_revision=2)
