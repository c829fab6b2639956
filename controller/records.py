"""Service records in the KV store: compare-and-set read-modify-write, and the pure record transitions
of a rollout (apply a verdict, undo, pause)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from nats.errors import MaxPayloadError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from drover.controller.rollout import Verdict
from drover.shared import wire
from drover.shared.bus import JS_READ_TIMEOUT, JS_TRANSIENT, JS_WRITE_DEADLINE
from drover.shared.errors import ConflictError, NotFoundError, PermanentError
from drover.shared.limits import MAX_RECORD_BYTES, NATS_MAX_PAYLOAD
from drover.shared.manifest import ServiceSpec, spec_hash
from drover.shared.models import Record, RevisionEntry, ServiceRecord
from drover.shared.retry import retrying

if TYPE_CHECKING:
    from drover.controller.main import Controller

CAS_ATTEMPTS = 8
# At most this many revisions even when more would fit in MAX_RECORD_BYTES: every change of a record (each
# rollout step) travels to every controller and agent watching the bucket, so small specs keep it small too.
HISTORY_MAX = 20

Change = Callable[[ServiceRecord | None], ServiceRecord | None]
R = TypeVar("R", bound=Record)


async def cas_update(
    kv: KeyValue, key: str, decode: Callable[[bytes], R], change: Callable[[R | None], R | None]
) -> tuple[R | None, R | None, int]:
    """Read-modify-write one key with compare-and-set: ``change`` gets the stored record (None when absent)
    and returns the new one, or None to write nothing. A lost race re-reads and calls ``change`` again, so a
    retried request computes from what is stored now (safe to retry). Returns (old, new, revision).

    A read or write that fails while the bucket's stream elects a leader (``bus.JS_TRANSIENT``) is done
    again from the read, for up to ``bus.JS_WRITE_DEADLINE``: a write that landed although its answer was
    lost then reads back as the stored value (``change`` sees it; at worst the request says 'unchanged')."""
    return await retrying(
        lambda: _cas_update(kv, key, decode, change), retry_on=JS_TRANSIENT, deadline=JS_WRITE_DEADLINE
    )


async def _cas_update(
    kv: KeyValue, key: str, decode: Callable[[bytes], R], change: Callable[[R | None], R | None]
) -> tuple[R | None, R | None, int]:
    for _ in range(CAS_ATTEMPTS):
        try:
            # A stream without a leader leaves a read unanswered for the client's whole 5 s timeout (a write
            # gets a 503 at once): asked with a shorter one, a read meets the new leader sooner.
            async with asyncio.timeout(JS_READ_TIMEOUT):
                entry = await kv.get(key)
            old = decode(entry.value) if entry.value else None
            rev: int | None = entry.revision
        except KeyNotFoundError:
            old, rev = None, None
        new = change(old)
        if new is None:
            return old, old, rev or 0
        try:
            if rev is None:
                new_rev = await kv.create(key, new.to_wire())
            else:
                new_rev = await kv.update(key, new.to_wire(), last=rev)
        except KeyWrongLastSequenceError:
            continue
        except MaxPayloadError:
            raise PermanentError(
                f"{key}: its record ({len(new.to_wire()) // 1024} KiB) is more than this NATS server takes in one "
                f"message (max_payload); drover's own servers take {NATS_MAX_PAYLOAD // (1024 * 1024)} MiB: set "
                f"max_payload: {NATS_MAX_PAYLOAD} in the server's configuration"
            ) from None
        except Exception as exc:  # create() on a key that appeared meanwhile
            if "wrong last sequence" in str(exc).lower() or "key exists" in str(exc).lower():
                continue
            raise
        return old, new, new_rev
    raise ConflictError(f"{key}: too many concurrent writers, try again")


async def update_service(
    ctl: Controller, name: str, change: Change
) -> tuple[ServiceRecord | None, ServiceRecord | None]:
    """Read-modify-write one service with CAS (``cas_update``) and update the controller's cache."""
    old, new, rev = await cas_update(ctl.store.services, name, ServiceRecord.from_wire, change)
    if new is not None and new is not old:
        ctl.state.set_service(name, new, rev)
        ctl.kick()
    return old, new


async def delete_service(kv: KeyValue, name: str) -> int | None:
    """Delete with compare-and-set on the revision just read; None when there is nothing to delete (absent,
    already deleted), so a retried delete is harmless (and retried like ``cas_update``). Returns the
    revision deleted."""
    return await retrying(lambda: _delete_service(kv, name), retry_on=JS_TRANSIENT, deadline=JS_WRITE_DEADLINE)


async def _delete_service(kv: KeyValue, name: str) -> int | None:
    for _ in range(CAS_ATTEMPTS):
        try:
            entry = await kv.get(name)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        try:
            await kv.delete(name, last=entry.revision)
        except KeyWrongLastSequenceError:
            continue  # changed meanwhile (an apply): delete what is stored now
        return entry.revision
    raise ConflictError(f"service {name}: too many concurrent writers, try again")


async def record_jobs(ctl: Controller, jobs: dict[str, dict[str, object]]) -> None:
    """Write what a pass decided about jobs (current run, last tick, runs) into their records."""
    for name, fields in jobs.items():

        def change(old: ServiceRecord | None, fields: dict[str, object] = fields) -> ServiceRecord | None:
            return None if old is None or old.deleted else old.model_copy(update=fields)

        try:
            await update_service(ctl, name, change)
        except Exception as exc:  # the next pass decides again from the record as it is
            ctl.log.info("job state not recorded", service=name, error=str(exc))


def _set_result(history: list[RevisionEntry], revision: int, result: str) -> list[RevisionEntry]:
    return [h.model_copy(update={"result": result}) if h.revision == revision else h for h in history]


def apply_verdict(rec: ServiceRecord, v: Verdict, now: float) -> ServiceRecord:
    """The record after a rollout verdict (pure)."""
    if v.state == "complete":
        return rec.model_copy(
            update={
                "rollout_state": "complete",
                "rollout_reason": "",
                "rollout_progress": v.progress,
                "rollout_progress_at": v.progress_at,
                "last_good": rec.revision,
                "history": _set_result(rec.history, rec.revision, "complete"),
            }
        )
    if v.state == "rolled-back" and v.rollback_to is not None:
        spec = rec.revision_spec(v.rollback_to)
        if spec is not None:
            history = _set_result(rec.history, rec.revision, "rolled-back")
            return rec.model_copy(
                update={
                    "revision": v.rollback_to,
                    "spec": spec,
                    "rollout_state": "rolled-back",
                    "rollout_reason": v.reason,
                    "rollout_started": now,
                    "rollout_progress": 0,
                    "rollout_progress_at": now,
                    "history": history,
                    "updated": now,
                }
            )
        v = Verdict("failed", v.reason)
    if v.state == "failed":
        return rec.model_copy(
            update={
                "rollout_state": "failed",
                "rollout_reason": v.reason,
                "history": _set_result(rec.history, rec.revision, "failed"),
            }
        )
    return rec.model_copy(update={"rollout_progress": v.progress, "rollout_progress_at": v.progress_at})


def _new_rollout(now: float) -> dict[str, object]:
    """The record fields of a rollout that starts ``now`` (a new desired revision)."""
    return {
        "updated": now,
        "rollout_state": "progressing",
        "rollout_reason": "",
        "rollout_started": now,
        "rollout_progress": 0,
        "rollout_progress_at": now,
    }


def bounded_history(rec: ServiceRecord, limit: int = MAX_RECORD_BYTES, most: int = HISTORY_MAX) -> ServiceRecord:
    """``rec`` with the oldest revisions dropped until it encodes to at most ``limit`` bytes and holds at most
    ``most`` revisions (pure). The current revision, the last good one (what a rollback returns to) and the
    highest (so a revision number is never given twice, even after an undo) always stay, whatever their size;
    of the others, the newest that fit are kept: many small specs, few big ones (whose size alone used to be
    capped so that 20 revisions of any spec would fit)."""
    budget = limit - len(rec.model_copy(update={"history": []}).to_wire())
    keep = {rec.revision, rec.last_good, rec.max_revision()}
    sizes = [len(wire.encode(h.model_dump(mode="json"))) for h in rec.history]
    used = sum(size for h, size in zip(rec.history, sizes, strict=True) if h.revision in keep)
    room = most - sum(1 for h in rec.history if h.revision in keep)  # for revisions that may go
    kept: list[RevisionEntry] = []
    full = False
    for h, size in reversed(list(zip(rec.history, sizes, strict=True))):
        if h.revision in keep:
            kept.append(h)
        elif not full and used + size <= budget and room > 0:
            kept.append(h)
            used += size
            room -= 1
        else:
            full = True  # the history is the newest revisions: one that does not fit ends it
    if len(kept) == len(rec.history):
        return rec
    return rec.model_copy(update={"history": kept[::-1]})


def new_revision(
    rec: ServiceRecord, spec: ServiceSpec, change: str, now: float, *, moves: bool = True, request_id: str = ""
) -> ServiceRecord:
    """``rec`` with ``spec`` desired as a new revision, numbered above every other (pure).

    As in kubectl, a spec equal to an older revision's moves that revision to the new number (it leaves the
    history, its number is never desired again), so the history holds each spec once and an undo of an
    undo returns to where it started. The last good revision follows its spec to the new number: a rollout
    of a spec already proven good has nothing better to roll back to. ``moves=False`` keeps the older entry
    (a secret's new content is a new revision of an unchanged spec, and rolling back keeps the replicas that
    still hold the old content)."""
    rev = rec.max_revision() + 1
    entry = RevisionEntry(revision=rev, spec=spec, time=now, change=change)
    history, last_good = rec.history, rec.last_good
    if moves:
        target = spec_hash(spec)
        same = {h.revision for h in history if h.spec is spec or spec_hash(h.spec) == target}
        history = [h for h in history if h.revision not in same]
        last_good = rev if last_good in same else last_good
    update: dict[str, object] = {"spec": spec, "revision": rev, "history": [*history, entry], "last_good": last_good}
    if request_id:
        update["last_request"] = request_id
    return bounded_history(rec.model_copy(update={**update, **_new_rollout(now)}))


def undo(
    rec: ServiceRecord | None,
    name: str,
    to_revision: int | None,
    now: float,
    *,
    request_id: str = "",
    from_revision: int | None = None,
) -> ServiceRecord | None:
    """Make an earlier revision's spec the desired one again, as a new revision (pure), as kubectl does:
    the target's entry moves to the new, highest number, so a second undo returns to where the first began.
    Without ``to_revision`` the target is the previous revision (the highest below the current one, else
    the highest other). None (nothing to write) when the target's spec is already the desired one.

    Safe to retry: a request whose ``request_id`` is the one that made the record's current revision is not
    done again (None: nothing to write); with ``from_revision`` (the revision the client saw), an undo that
    finds another revision desired refuses instead of moving again."""
    if rec is None or rec.deleted:
        raise NotFoundError(f'service "{name}" not found')
    if request_id and rec.last_request == request_id:
        return None  # this very request was applied already (its reply was lost)
    if from_revision is not None and rec.revision != from_revision:
        raise ConflictError(
            f'service "{name}" is at revision {rec.revision}, not {from_revision}: not undone (read it again)'
        )
    if to_revision is None:
        earlier = sorted({h.revision for h in rec.history if h.revision != rec.revision})
        if not earlier:
            raise NotFoundError(f'service "{name}" has no earlier revision to return to')
        below = [r for r in earlier if r < rec.revision]
        to_revision = below[-1] if below else earlier[-1]
    spec = rec.revision_spec(to_revision)
    if spec is None:
        known = ", ".join(str(h.revision) for h in sorted(rec.history, key=lambda h: h.revision))
        raise NotFoundError(f'service "{name}" has no revision {to_revision} (known: {known})')
    if to_revision == rec.revision or spec_hash(spec) == spec_hash(rec.spec):
        return None  # kubectl: "skipped rollback (current template already matches revision N)"
    return new_revision(rec, spec, f"undo to revision {to_revision}", now, request_id=request_id)


def stamp() -> float:
    return time.time()
