"""Revision history bounded by the record's encoded size (and at most 20 revisions): big specs keep fewer
revisions instead of being refused, and the current, last good and highest revisions always stay."""

from __future__ import annotations

from drover.controller import records
from drover.shared.limits import MAX_RECORD_BYTES, MAX_SPEC_BYTES, NATS_MAX_PAYLOAD
from drover.shared.models import RevisionEntry, ServiceRecord, spec_of


def spec(image: str, padding: int = 0) -> dict[str, object]:
    return {"image": image, "env": {"PAD": "x" * padding}} if padding else {"image": image}


def applied(n: int, padding: int = 0, last_good: int = 0) -> ServiceRecord:
    """A record after ``n`` applies of a changed spec (revisions 1..n), the last good one ``last_good``."""
    first = spec_of(spec("v1", padding))
    rec = ServiceRecord(name="web", spec=first, history=[RevisionEntry(revision=1, spec=first, time=1.0)])
    for i in range(2, n + 1):
        rec = records.new_revision(rec, spec_of(spec(f"v{i}", padding)), f"image=v{i}", float(i))
        if i == last_good:
            rec = rec.model_copy(update={"last_good": i})
    return rec


def test_small_specs_keep_the_newest_twenty_revisions() -> None:
    rec = applied(60, last_good=5)
    assert [h.revision for h in rec.history] == [5, *range(42, 61)]  # 20 in all  # the last good one stays, of course
    assert len(rec.to_wire()) <= MAX_RECORD_BYTES
    full = rec.model_copy(update={"history": [RevisionEntry(revision=i, spec=spec_of(spec(f"v{i}")), time=float(i))
                                              for i in range(1, 61)]})
    assert len(records.bounded_history(full, most=100).history) == 60  # all fit in the bytes


def test_big_specs_keep_the_newest_that_fit_and_always_the_current_and_last_good() -> None:
    rec = applied(30, padding=60_000, last_good=3)  # ~60 KB a spec: about 7 fit in 512 KiB
    kept = [h.revision for h in rec.history]
    assert len(rec.to_wire()) <= MAX_RECORD_BYTES
    assert kept[0] == 3 and 30 in kept and rec.revision_spec(3) is not None  # a rollback still finds its spec
    newest = kept[1:]
    assert newest == list(range(newest[0], 31)) and 4 <= len(newest) < 10  # the newest, contiguous
    # The same history with twice the room keeps more: the bound is bytes, not a count.
    specs = [spec_of(spec(f"v{i}", 60_000)) for i in range(1, 31)]
    full = rec.model_copy(update={"history": [RevisionEntry(revision=i, spec=s, time=float(i))
                                              for i, s in enumerate(specs, start=1)]})
    roomy = records.bounded_history(full, 2 * MAX_RECORD_BYTES, most=100)
    assert len(kept) < len(roomy.history) < 30 and len(roomy.to_wire()) <= 2 * MAX_RECORD_BYTES


def test_the_largest_spec_fits_with_its_last_good_and_the_record_stays_below_a_nats_message() -> None:
    pad = MAX_SPEC_BYTES - 2_000  # the rest of the spec's JSON form (its defaults) takes about 600 bytes
    rec = applied(5, padding=pad, last_good=2)
    assert {2, 5} <= {h.revision for h in rec.history}
    assert len(rec.to_wire()) < NATS_MAX_PAYLOAD  # what drover's servers take in one message


def test_undo_back_and_forth_numbers_each_step_above_all_and_stays_bounded() -> None:
    rec = applied(6, padding=90_000)
    back = records.undo(rec, "web", 5, 7.0)
    assert back is not None and back.revision == 7 and back.spec == rec.revision_spec(5)
    for step in range(3):  # undo toggles between the last two specs, each time as a new number
        nxt = records.undo(back, "web", None, 8.0 + step)
        assert nxt is not None and nxt.revision == back.revision + 1
        assert nxt.spec == back.revision_spec(back.revision - 1)
        assert len(nxt.to_wire()) <= MAX_RECORD_BYTES
        back = nxt
    assert back.revision == back.max_revision() == 10
    revs = [h.revision for h in back.history]
    assert revs == sorted(revs) and len(set(map(str, (h.spec for h in back.history)))) == len(revs)  # no spec twice
    nxt = records.new_revision(back, spec_of(spec("v7", 90_000)), "image=v7", 20.0)
    assert nxt.revision == 11 and len(nxt.to_wire()) <= MAX_RECORD_BYTES
