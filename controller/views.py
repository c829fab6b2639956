"""Pure builders of the rows the CLI shows (``get``/``describe``), with the contract's JSON keys."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from drover.controller.reconcile import allocation, in_place_restarts
from drover.controller.snapshot import Snapshot, node_status
from drover.controller.tally import ServiceCounts
from drover.controller.workloads import JobReplica, eligible_nodes, job_params, job_state, run_of
from drover.shared.models import (
    AssignedContainer,
    ContainerState,
    ContainerStatus,
    NodeStatus,
    ServiceRecord,
    ServiceStatus,
)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def container_name(service: str, rid: str) -> str:
    return f"drover-{service}-{rid}"


def _replicas(
    snap: Snapshot, service: str | None, on_node: str | None
) -> Iterator[tuple[str, AssignedContainer, ContainerStatus | None, ContainerState, bool]]:
    """(node, assigned, observed, state, ready) of every assigned replica (of ``service``, on ``on_node``)."""
    if on_node is not None:
        nodes = [on_node] if on_node in snap.assignments else []
    elif service is not None and snap.placements is not None:  # only the nodes holding the service's replicas
        nodes = sorted(n for n in snap.placements.get(service, {}) if n in snap.assignments)
    else:
        nodes = sorted(snap.assignments)
    for node in nodes:
        a = snap.assignments[node]
        ns = snap.nodes.get(node)
        lost = ns is None or node_status(ns, snap.now, snap.node_grace) is NodeStatus.LOST
        for c in a.containers:
            if service is not None and c.service != service:
                continue
            obs = ns.observed.get(c.id) if ns else None
            state = ContainerState.PENDING
            if lost:
                state = ContainerState.LOST
            elif obs is not None:
                state = obs.state
            yield node, c, obs, state, bool(obs and obs.ready and not lost and obs.revision == c.revision)


def container_rows(
    snap: Snapshot, *, service: str | None = None, on_node: str | None = None
) -> list[dict[str, Any]]:
    rows = [
        {
            "id": c.id,
            "name": container_name(c.service, c.id),
            "service": c.service,
            "node": node,
            "revision": c.revision,
            "state": str(state),
            "ready": ready,
            "restarts": c.restarts + in_place_restarts(c, obs),
            "host_port": obs.host_port if obs else None,
            "ports": dict(obs.ports) if obs else {},
            "container_id": obs.container_id if obs else "",
            "started_at": iso(obs.started_at) if obs else None,
            "exit_code": obs.exit_code if obs else None,
            "message": obs.message if obs else "",
        }
        for node, c, obs, state, ready in _replicas(snap, service, on_node)
    ]
    rows.sort(key=lambda r: (r["service"], r["node"], r["id"]))
    return rows


def counts_of(rows: list[dict[str, Any]], revision: int) -> ServiceCounts:
    """A service's counts from its replica rows (the walk: what ``tally`` keeps without one)."""
    return ServiceCounts(
        total=len(rows),
        current=sum(1 for r in rows if r["revision"] == revision),
        running=sum(1 for r in rows if r["state"] == ContainerState.RUNNING),
        ready=sum(1 for r in rows if r["ready"]),
        crashing=any(r["state"] in (ContainerState.CRASH_LOOP, ContainerState.LOST) for r in rows),
    )


def service_status(rec: ServiceRecord, counts: ServiceCounts, now: float, unplaced: bool) -> ServiceStatus:
    ready = counts.ready
    settled = counts.current == counts.total == rec.replicas and not unplaced
    if rec.rollout_state == "failed":
        return ServiceStatus.FAILED
    if rec.rollout_state == "rolled-back":
        return ServiceStatus.ROLLED_BACK if settled and ready == rec.replicas else ServiceStatus.ROLLING_BACK
    if settled and ready == rec.replicas:
        return ServiceStatus.AVAILABLE
    deadline = rec.spec.update.progress_deadline
    if (settled and counts.crashing) or now - rec.updated > deadline:
        return ServiceStatus.DEGRADED
    return ServiceStatus.PROGRESSING


def job_status(rec: ServiceRecord, rows: list[dict[str, Any]]) -> str:
    """running | succeeded | failed: the current run's, else the last recorded run's (a scheduled job before
    its first tick is running: its schedule is)."""
    run = rec.job_run if rec.spec.schedule else max(rec.job_run, 1)
    current = [
        JobReplica(r["id"], r["node"], r["state"], r.get("exit_code"), int(r.get("restarts") or 0))
        for r in rows if r["revision"] == rec.revision and run_of(r["id"]) == run
    ]
    recorded = next((str(r.get("result")) for r in reversed(rec.job_runs)
                     if r.get("run") == run and (rec.spec.schedule or r.get("revision") == rec.revision)), "")
    if recorded in ("succeeded", "failed"):
        return recorded  # a finished run stays finished, even once its containers are gone
    if current or not rec.spec.schedule:
        return job_state(rec.spec, current).status
    last = [r for r in rec.job_runs if r.get("result")]
    return str(last[-1]["result"]) if last else "running"


def service_rows(
    snap: Snapshot,
    *,
    unplaced: dict[str, str] | None = None,
    name: str | None = None,
    notes: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """``unplaced``: services that cannot converge (their status is not available), with why; ``notes``:
    any other current problem of a service (e.g. autoscaling failed), shown in its message."""
    unplaced = unplaced or {}
    notes = notes or {}
    tally = snap.tally
    # With the state's tally, the counts are kept per service (no walk over every replica: `get services` at
    # 100,000 replicas); only job services, whose status needs their replicas' runs and exits, walk theirs.
    walked: list[str | None] = [name]  # (None: every replica)
    if tally is not None:
        walked = [n for n, r in snap.services.items() if r.spec.mode == "job" and (name is None or n == name)]
    by_service: dict[str, list[dict[str, Any]]] = {}
    for svc in walked:
        for node, c, obs, state, ready in _replicas(snap, svc, None):
            by_service.setdefault(c.service, []).append({
                "revision": c.revision, "state": str(state), "ready": ready,
                # what a job's status needs: which run, how it ended, how often it was retried
                "id": c.id, "node": node, "exit_code": obs.exit_code if obs else None,
                "restarts": c.restarts + in_place_restarts(c, obs),
            })
    lost = {}
    if tally is not None:  # (a lost node's replicas are counted as lost here: liveness changes with the clock)
        among = snap.placements.get(name, {}) if name is not None and snap.placements is not None else tally.by_node
        lost = tally.lost_counts(lost_nodes(snap, among))
    out = []
    for svc_name in sorted(snap.services):
        if name is not None and svc_name != name:
            continue
        rec = snap.services[svc_name]
        if rec.deleted:
            continue
        rows = by_service.get(svc_name, [])
        mode = rec.spec.mode
        if mode == "global":  # desired: one per eligible node
            info = {n: (node_status(s, snap.now, snap.node_grace) is NodeStatus.READY, n, s.reg.labels)
                    for n, s in snap.nodes.items()}
            rec = rec.model_copy(update={"replicas": len(eligible_nodes(info, rec.spec))})
        elif mode == "job":
            rec = rec.model_copy(update={"replicas": job_params(rec.spec)[0]})
        if tally is not None and mode != "job":
            counts = ServiceCounts.of(tally.by_service.get(svc_name), lost.get(svc_name), rec.revision)
        else:
            counts = counts_of(rows, rec.revision)
        stuck = svc_name in unplaced
        status = job_status(rec, rows) if mode == "job" else str(service_status(rec, counts, snap.now, stuck))
        out.append(
            {
                "name": svc_name,
                "image": rec.spec.image,
                "revision": rec.revision,
                "replicas": rec.replicas,
                "running": counts.running,
                "ready": counts.ready,
                "updated": counts.current,
                "status": status,
                "labels": dict(rec.labels),
                "message": unplaced.get(svc_name, "") or notes.get(svc_name, "") or rec.rollout_reason,
                "created": iso(rec.created),
                "updated_at": iso(rec.updated),
            }
        )
    return out


def lost_nodes(snap: Snapshot, among: Iterable[str]) -> list[str]:
    """The nodes of ``among`` that are lost (silent past their grace, or with no registration)."""
    # (``node_status(ns, …) is LOST`` written out: this runs over every node with replicas for each `get services`)
    now, grace, nodes = snap.now, snap.node_grace, snap.nodes
    out = []
    for node in among:
        ns = nodes.get(node)
        if ns is None:
            out.append(node)
            continue
        last = ns.last_heartbeat if ns.last_heartbeat is not None else ns.seen_since
        if now - (last if last > ns.seen_since else ns.seen_since) > grace:
            out.append(node)
    return out


def node_rows(snap: Snapshot, *, name: str | None = None) -> list[dict[str, Any]]:
    out = []
    for node_name in sorted(snap.nodes) if name is None else [name] if name in snap.nodes else []:
        n = snap.nodes[node_name]
        a = snap.assignments.get(node_name)
        containers = a.containers if a else []
        cpu, mem = allocation(containers)
        out.append(
            {
                "name": node_name,
                "status": str(node_status(n, snap.now, snap.node_grace)),
                "labels": dict(n.reg.labels),
                "address": n.reg.address,
                "capacity": {"cpu": n.reg.capacity.cpu, "memory": n.reg.capacity.memory},
                "allocated": {"cpu": round(cpu, 6), "memory": mem},
                "containers": len(containers),
                "last_heartbeat": iso(n.last_heartbeat),
                "driver": n.reg.driver,
                "cordoned": n.ctl.cordoned,
                "generation": a.generation if a else 0,
            }
        )
    return out


def page_key(kind: str, row: dict[str, Any]) -> list[str]:
    """Where a row sorts in its listing (``get`` pages continue after the last key they got)."""
    if kind == "containers":
        return [str(row.get("service")), str(row.get("node")), str(row.get("id"))]
    return [str(row.get("name"))]


def page(kind: str, rows: list[dict[str, Any]], after: list[str] | None, size: int | None) -> list[dict[str, Any]]:
    """The rows after the key ``after`` (None: from the start), at most ``size`` of them (None: all).

    Keyset rather than offset paging: a row added or removed between two pages shifts no other row."""
    if after is not None:  # rows are sorted by their key: find where the page starts by bisection
        rows = rows[bisect.bisect_right(rows, after, key=lambda r: page_key(kind, r)) :]
    return rows if size is None else rows[:size]


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How many containers, by state, on how many nodes (what ``describe`` shows of a big service)."""
    by_state: dict[str, int] = {}
    for r in rows:
        by_state[str(r["state"])] = by_state.get(str(r["state"]), 0) + 1
    return {"total": len(rows), "by_state": by_state, "nodes": len({r["node"] for r in rows})}


class ListingCache:
    """The rows of a listing a client is paging through, kept for a moment: a continuation page (``after``
    given) within ``ttl`` seconds of the listing's first page is cut from the same rows, instead of
    rebuilding 10,000 rows for each of 20 pages (and the pages then form one consistent listing)."""

    def __init__(self, ttl: float = 2.0, keep: int = 32):
        self.ttl = ttl
        self.keep = keep
        self._rows: dict[tuple[Any, ...], tuple[float, list[dict[str, Any]]]] = {}

    def rows(
        self, key: tuple[Any, ...], after: list[str] | None, now: float, build: Callable[[], list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        hit = self._rows.get(key)
        if after is not None and hit is not None and now - hit[0] <= self.ttl:
            return hit[1]
        rows = build()
        # Only listings still being paged through are kept (10,000 rows are megabytes).
        self._rows = {k: v for k, v in self._rows.items() if now - v[0] <= self.ttl}
        self._rows[key] = (now, rows)
        if len(self._rows) > self.keep:  # many clients paging at once: forget the oldest listings
            for old in sorted(self._rows, key=lambda k: self._rows[k][0])[: len(self._rows) - self.keep]:
                del self._rows[old]
        return rows
