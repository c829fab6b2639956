"""Handlers of the controller's request/reply API (``drover.<cluster>.api.<verb>``; see docs/BUS.md).

Reads are answered from the in-memory state; writes go to the KV store with compare-and-set and are
retried from a fresh read when they lose a race.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import nats.errors

from drover.controller import autoscaler, backup, preview, records, secrets, views
from drover.controller.records import update_service
from drover.shared.errors import NotFoundError, ValidationError
from drover.shared.limits import MAX_REPLICAS
from drover.shared.manifest import ManifestError, ServiceSpec, spec_hash
from drover.shared.models import NodeControl, RevisionEntry, ServiceRecord, spec_of
from drover.shared.specchange import describe_change

DESCRIBE_CONTAINERS = 100  # rows of containers in a describe_service reply (the rest is in its summary)

if TYPE_CHECKING:
    from drover.controller.main import Controller

Handler = Callable[["Controller", dict[str, Any]], Awaitable[Any]]


class UnsupportedError(Exception):
    pass


async def apply(ctl: Controller, body: dict[str, Any]) -> Any:
    # All or nothing: validate first. In a thread: a big request (up to the NATS payload limit) takes a
    # while to validate and must not stall the event loop (heartbeats, leases, other requests).
    manifests = await asyncio.to_thread(preview.manifests_of, body, ctl.cfg.allow_privileged_mounts)
    expected = preview.if_revision(body)
    if expected is not None:  # refuse before writing anything when any stored revision differs
        for m in manifests:
            preview.check_revision(m.name, ctl.snapshot().services.get(m.name), expected)
    missing = await secrets.missing_secrets(ctl, [(m.name, m.spec) for m in manifests])
    if missing:
        raise ValidationError(missing)
    results = []
    for m in manifests:
        spec = spec_of(m.spec)  # as records keep it: the revision's spec (the count is the record's)
        replicas = m.spec.replicas
        labels = dict(m.metadata.labels)
        outcome: dict[str, str] = {}

        def change(
            old: ServiceRecord | None,
            spec: ServiceSpec = spec,
            replicas: int = replicas,
            labels: dict[str, str] = labels,
            outcome: dict[str, str] = outcome,
            name: str = m.name,
        ) -> ServiceRecord | None:
            now = time.time()
            preview.check_revision(name, old, expected)
            if old is None or old.deleted:
                outcome["action"] = "created"
                return ServiceRecord(
                    name=name,
                    labels=labels,
                    spec=spec,
                    revision=1,
                    replicas=replicas,
                    created=now,
                    updated=now,
                    history=[RevisionEntry(revision=1, spec=spec, time=now, change="created")],
                    rollout_started=now,
                    rollout_progress_at=now,
                )
            if spec_hash(spec) != spec_hash(old.spec):
                outcome["action"] = "configured"
                rec = records.new_revision(old, spec, describe_change(old.spec, spec), now)
                return rec.model_copy(update={"replicas": replicas, "labels": labels, "autoscale_enabled": True})
            if replicas != old.replicas or labels != old.labels or not old.autoscale_enabled:
                outcome["action"] = "configured"
                return old.model_copy(
                    update={"replicas": replicas, "labels": labels, "updated": now, "autoscale_enabled": True}
                )
            outcome["action"] = "unchanged"
            return None

        _, new = await update_service(ctl, m.name, change)
        action = outcome["action"]
        if action != "unchanged" and new is not None:
            detail = f"revision {new.revision}, {new.replicas} replica(s)"
            await ctl.emit("service-" + action, service=m.name, message=f"service {action}: {detail}")
        results.append(
            {"kind": "service", "name": m.name, "action": action, "revision": new.revision if new else None}
        )
    return {"results": results}


async def delete(ctl: Controller, body: dict[str, Any]) -> Any:
    names = body.get("names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValidationError([("names", "must be a list of service names")])
    results = []
    for name in names:
        if await records.delete_service(ctl.store.services, name) is None:
            results.append({"name": name, "action": "not-found"})
            continue
        ctl.state.set_service(name, None, 1 << 62)
        ctl.kick()
        await ctl.emit("service-deleted", service=name, message="service deleted")
        results.append({"name": name, "action": "deleted"})
    if results and all(r["action"] == "not-found" for r in results):
        raise NotFoundError("; ".join(f'service "{r["name"]}" not found' for r in results))
    return {"results": results}


async def scale(ctl: Controller, body: dict[str, Any]) -> Any:
    name = body.get("name")
    replicas = body.get("replicas")
    if not isinstance(name, str) or isinstance(replicas, bool) or not isinstance(replicas, int):
        raise ValidationError([("replicas", f"must be an integer 0-{MAX_REPLICAS}")])
    if not 0 <= replicas <= MAX_REPLICAS:  # the limit apply enforces, also for a request off the bus
        raise ValidationError([("replicas", f"must be an integer 0-{MAX_REPLICAS}")])

    def change(old: ServiceRecord | None) -> ServiceRecord | None:
        if old is None or old.deleted:
            raise NotFoundError(f'service "{name}" not found')
        return old.model_copy(update={"replicas": replicas, "autoscale_enabled": False, "updated": time.time()})

    await update_service(ctl, name, change)
    await ctl.emit("scaled", service=name, message=f"scaled to {replicas}")
    return {"name": name, "replicas": replicas}


def _node_name(ctl: Controller, body: dict[str, Any]) -> str:
    node = body.get("node")
    if not isinstance(node, str) or not node:
        raise ValidationError([("node", "must be a node name")])
    if node not in ctl.state.nodes:
        raise NotFoundError(f'node "{node}" not found')
    return node


async def _set_control(
    ctl: Controller, node: str, change: Callable[[NodeControl], NodeControl], kind: str
) -> Any:
    """Compare-and-set on the node's stored control (an absolute change of what is stored now, so a retry
    or a concurrent cordon/drain is never lost or doubled)."""

    def cas(old: NodeControl | None) -> NodeControl | None:
        cur = old or NodeControl()
        new = change(cur)
        return None if old is not None and new == old else new

    _, new, _ = await records.cas_update(ctl.store.nodectl, node, NodeControl.from_wire, cas)
    if new is not None:
        ctl.state.set_control(node, new)
    ctl.kick()
    await ctl.emit(kind, node=node, message=f"node {node} {kind}")
    row = views.node_rows(ctl.snapshot(), name=node)
    return {"node": node, "status": row[0]["status"] if row else ""}


async def cordon(ctl: Controller, body: dict[str, Any]) -> Any:
    node = _node_name(ctl, body)
    return await _set_control(ctl, node, lambda c: NodeControl(cordoned=True, draining=c.draining), "cordoned")


async def uncordon(ctl: Controller, body: dict[str, Any]) -> Any:
    node = _node_name(ctl, body)
    return await _set_control(ctl, node, lambda c: NodeControl(cordoned=False, draining=False), "uncordoned")


async def drain(ctl: Controller, body: dict[str, Any]) -> Any:
    node = _node_name(ctl, body)
    return await _set_control(ctl, node, lambda c: NodeControl(cordoned=True, draining=True), "draining")


def _opt_name(body: dict[str, Any], key: str = "name") -> str | None:
    v = body.get(key)
    if v is not None and not isinstance(v, str):
        raise ValidationError([(key, "must be a string")])
    return v


def _paging(body: dict[str, Any]) -> tuple[list[str] | None, int | None]:
    """``page`` (rows per reply) and ``after`` (the sort key of the last row the client has): big listings
    come in pieces that each fit in a NATS message. Without ``page`` every row comes at once."""
    size, after = body.get("page"), body.get("after")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
        raise ValidationError([("page", "must be a positive integer")])
    if after is not None and (not isinstance(after, list) or not all(isinstance(k, str) for k in after)):
        raise ValidationError([("after", "must be a list of strings")])
    return after, size


async def get_services(ctl: Controller, body: dict[str, Any]) -> Any:
    await ctl.until_warm()
    name = _opt_name(body)
    after, size = _paging(body)
    rows = ctl.listings.rows(
        ("services", name), after, time.monotonic(),
        lambda: views.service_rows(ctl.snapshot(), unplaced=ctl.unplaced, name=name, notes=ctl.problems.messages()),
    )
    if name is not None and not rows:
        raise NotFoundError(f'service "{name}" not found')
    return views.page("services", rows, after, size)


async def get_containers(ctl: Controller, body: dict[str, Any]) -> Any:
    await ctl.until_warm()
    name = _opt_name(body)
    service = _opt_name(body, "service")
    after, size = _paging(body)
    rows = ctl.listings.rows(
        ("containers", service), after, time.monotonic(), lambda: views.container_rows(ctl.snapshot(), service=service)
    )
    if name is not None:
        rows = [r for r in rows if name in (r["id"], r["name"], r["container_id"])]
        if not rows:
            raise NotFoundError(f'container "{name}" not found')
    return views.page("containers", rows, after, size)


async def get_nodes(ctl: Controller, body: dict[str, Any]) -> Any:
    await ctl.until_warm()
    name = _opt_name(body)
    after, size = _paging(body)
    rows = ctl.listings.rows(
        ("nodes", name), after, time.monotonic(), lambda: views.node_rows(ctl.snapshot(), name=name)
    )
    if name is not None and not rows:
        raise NotFoundError(f'node "{name}" not found')
    return views.page("nodes", rows, after, size)


EVENTS_CATCH_UP = 1.0  # at most this long an events reply waits for the controller's own latest events


async def _caught_up(ctl: Controller) -> None:
    """Read your own events: the events this controller posted before the request (a pause, an undo) are
    stored, and every event stored before the reply (also another controller's: requests go to any of them)
    is read back, before the reply is made. Bounded: while the events stream is away the reply shows what is
    held (events are a record, not state)."""
    with contextlib.suppress(TimeoutError, nats.errors.Error):
        async with asyncio.timeout(EVENTS_CATCH_UP):
            await ctl.outbox.settled()  # then the stream's last sequence covers this controller's own events
            await ctl.eventlog.reached(await ctl.eventlog.stream_last())


def _events(ctl: Controller, *, service: str | None = None, node: str | None = None, limit: int = 200) -> Any:
    out = [
        e.model_dump(mode="json")
        for e in ctl.state.events
        if (service is None or e.service == service) and (node is None or e.node == node)
    ]
    for e in out:
        e["time"] = views.iso(e["time"])
    return out[-limit:] if limit > 0 else out


async def describe_service(ctl: Controller, body: dict[str, Any]) -> Any:
    name = _opt_name(body)
    snap = ctl.snapshot()
    rec = snap.services.get(name or "")
    if name is None or rec is None:
        raise NotFoundError(f'service "{name}" not found')
    history = _history_rows(rec)
    containers = views.container_rows(snap, service=name)
    await _caught_up(ctl)
    return {
        "service": views.service_rows(snap, unplaced=ctl.unplaced, name=name, notes=ctl.problems.messages())[0],
        "spec": {**rec.spec.model_dump(mode="json"), "replicas": rec.replicas},
        "rollout": {"state": rec.rollout_state, "reason": rec.rollout_reason, "paused": rec.paused},
        "autoscale": autoscaler.describe(ctl, rec),
        "labels": rec.labels,
        "history": history,
        "runs": [
            {**r, "started": views.iso(r.get("started")), "finished": views.iso(r.get("finished") or None)}
            for r in rec.job_runs
        ],
        # A big service's replicas do not fit in one reply (nor on a screen): the first ones and a summary.
        "containers": containers[:DESCRIBE_CONTAINERS],
        "containers_summary": views.summary(containers),
        "events": _events(ctl, service=name, limit=30),
    }


async def describe_node(ctl: Controller, body: dict[str, Any]) -> Any:
    name = _opt_name(body)
    snap = ctl.snapshot()
    rows = views.node_rows(snap, name=name)
    if name is None or not rows:
        raise NotFoundError(f'node "{name}" not found')
    containers = views.container_rows(snap, on_node=name)
    await _caught_up(ctl)
    return {"node": rows[0], "containers": containers, "events": _events(ctl, node=name, limit=30)}


async def events(ctl: Controller, body: dict[str, Any]) -> Any:
    limit = body.get("limit", 200)
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise ValidationError([("limit", "must be an integer")])
    offset = body.get("offset", 0)
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ValidationError([("offset", "must be a non-negative integer")])
    _, size = _paging(body)
    await _caught_up(ctl)
    rows = _events(ctl, service=_opt_name(body, "service"), limit=limit)
    # Paged (``page`` rows from ``offset`` of the selection) so that thousands of events never outgrow a reply.
    return rows[offset:] if size is None else rows[offset : offset + size]


def _name(body: dict[str, Any]) -> str:
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise ValidationError([("name", "must be a service name")])
    return name


def _history_rows(rec: ServiceRecord) -> list[dict[str, Any]]:
    rows = []
    for h in sorted(rec.history, key=lambda h: h.time):
        result = h.result
        if not result and h.revision == rec.revision:
            result = "paused" if rec.paused else rec.rollout_state
        rows.append({"revision": h.revision, "time": views.iso(h.time), "change": h.change, "result": result or ""})
    return rows


async def rollout_history(ctl: Controller, body: dict[str, Any]) -> Any:
    name = _name(body)
    rec = ctl.state.services.get(name)
    if rec is None:
        raise NotFoundError(f'service "{name}" not found')
    return _history_rows(rec.value)


async def rollout_status(ctl: Controller, body: dict[str, Any]) -> Any:
    name = _name(body)
    snap = ctl.snapshot()
    rec = snap.services.get(name)
    if rec is None:
        raise NotFoundError(f'service "{name}" not found')
    row = views.service_rows(snap, unplaced=ctl.unplaced, name=name)[0]
    return {**row, "rollout": rec.rollout_state, "reason": rec.rollout_reason, "paused": rec.paused}


async def rollout_undo(ctl: Controller, body: dict[str, Any]) -> Any:
    name = _name(body)
    to = body.get("to_revision")
    if to is not None and (not isinstance(to, int) or isinstance(to, bool) or to < 1):
        raise ValidationError([("to_revision", "must be a revision number >= 1")])
    request_id = body.get("request_id") or ""
    from_revision = body.get("from_revision")
    if not isinstance(request_id, str):
        raise ValidationError([("request_id", "must be a string")])
    if from_revision is not None and (not isinstance(from_revision, int) or isinstance(from_revision, bool)):
        raise ValidationError([("from_revision", "must be a revision number")])
    old, new = await update_service(
        ctl, name,
        lambda old: records.undo(
            old, name, to, time.time(), request_id=request_id, from_revision=from_revision
        ),
    )
    assert new is not None
    if new is old:  # a retry of an undo already done, or the target's spec is the desired one already
        if request_id and new.last_request == request_id:
            return {"name": name, "revision": new.revision}
        return {"name": name, "revision": new.revision, "skipped": True}
    change = new.history[-1].change if new.history else ""
    await ctl.emit("rollout-undo", service=name, message=f"{change}: desired again as revision {new.revision}")
    # Paused: the revision is stored but rolls out only on resume (kubectl refuses such an undo instead; here
    # the user is told).
    return {"name": name, "revision": new.revision, "paused": new.paused}


async def _pause(ctl: Controller, body: dict[str, Any], paused: bool) -> Any:
    name = _name(body)

    def change(old: ServiceRecord | None) -> ServiceRecord | None:
        if old is None or old.deleted:
            raise NotFoundError(f'service "{name}" not found')
        return None if old.paused == paused else old.model_copy(update={"paused": paused})

    _, new = await update_service(ctl, name, change)
    # Events are read as text (events, describe, the dashboard): say what happened, not only its kind.
    what = "paused" if paused else "resumed"
    rev = f" at revision {new.revision}" if new is not None else ""
    await ctl.emit(f"rollout-{what}", service=name, message=f"rollout {what}{rev}")
    return {"name": name, "paused": paused}


async def rollout_pause(ctl: Controller, body: dict[str, Any]) -> Any:
    return await _pause(ctl, body, True)


async def rollout_resume(ctl: Controller, body: dict[str, Any]) -> Any:
    return await _pause(ctl, body, False)


async def leader(ctl: Controller, body: dict[str, Any]) -> Any:
    from drover.controller.leader import read_lease

    kv = getattr(ctl, "leader_kv", None)  # None while the controller is still starting
    lease = await read_lease(kv) if kv is not None else None
    if lease is None:
        raise NotFoundError("no controller holds the leader lease right now")
    return {"id": lease.id, "term": lease.term, "since": views.iso(lease.since)}


HANDLERS: dict[str, Handler] = {
    "leader": leader,
    "rollout_history": rollout_history,
    "rollout_status": rollout_status,
    "rollout_undo": rollout_undo,
    "rollout_pause": rollout_pause,
    "rollout_resume": rollout_resume,
    "apply": apply,
    "preview": preview.preview,
    "snapshot_save": backup.snapshot_save,
    "snapshot_restore": backup.snapshot_restore,
    "secret_create": secrets.secret_create,
    "secret_list": secrets.secret_list,
    "secret_delete": secrets.secret_delete,
    "delete": delete,
    "scale": scale,
    "cordon": cordon,
    "uncordon": uncordon,
    "drain": drain,
    "get_services": get_services,
    "get_containers": get_containers,
    "get_nodes": get_nodes,
    "describe_service": describe_service,
    "describe_node": describe_node,
    "events": events,
}

__all__ = ["HANDLERS", "ManifestError", "UnsupportedError"]
