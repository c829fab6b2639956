"""Pure builders of the rows the CLI shows (``get``/``describe``), with the contract's JSON keys."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from drover.controller.reconcile import allocation
from drover.controller.snapshot import Snapshot, node_status
from drover.shared.models import ContainerState, NodeStatus, ServiceRecord, ServiceStatus


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def container_name(service: str, rid: str) -> str:
    return f"drover-{service}-{rid}"


def container_rows(snap: Snapshot, *, service: str | None = None) -> list[dict[str, Any]]:
    rows = []
    for node in sorted(snap.assignments):
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
            rows.append(
                {
                    "id": c.id,
                    "name": container_name(c.service, c.id),
                    "service": c.service,
                    "node": node,
                    "revision": c.revision,
                    "state": str(state),
                    "ready": bool(obs and obs.ready and not lost and obs.revision == c.revision),
                    "restarts": c.restarts + (obs.restarts if obs else 0),
                    "host_port": obs.host_port if obs else None,
                    "ports": dict(obs.ports) if obs else {},
                    "container_id": obs.container_id if obs else "",
                    "started_at": iso(obs.started_at) if obs else None,
                    "exit_code": obs.exit_code if obs else None,
                    "message": obs.message if obs else "",
                }
            )
    rows.sort(key=lambda r: (r["service"], r["node"], r["id"]))
    return rows


def service_status(rec: ServiceRecord, rows: list[dict[str, Any]], now: float, unplaced: bool) -> ServiceStatus:
    current = [r for r in rows if r["revision"] == rec.revision]
    ready = sum(1 for r in rows if r["ready"])
    settled = len(current) == len(rows) == rec.replicas and not unplaced
    if rec.rollout_state == "failed":
        return ServiceStatus.FAILED
    if rec.rollout_state == "rolled-back":
        return ServiceStatus.ROLLED_BACK if settled and ready == rec.replicas else ServiceStatus.ROLLING_BACK
    if settled and ready == rec.replicas:
        return ServiceStatus.AVAILABLE
    deadline = float((rec.spec.get("update") or {}).get("progress_deadline", 120.0) or 120.0)
    crashing = any(r["state"] in (ContainerState.CRASH_LOOP, ContainerState.LOST) for r in rows)
    if (settled and crashing) or now - rec.updated > deadline:
        return ServiceStatus.DEGRADED
    return ServiceStatus.PROGRESSING


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
    by_service: dict[str, list[dict[str, Any]]] = {}
    for r in container_rows(snap):
        by_service.setdefault(r["service"], []).append(r)
    out = []
    for svc_name in sorted(snap.services):
        if name is not None and svc_name != name:
            continue
        rec = snap.services[svc_name]
        if rec.deleted:
            continue
        rows = by_service.get(svc_name, [])
        out.append(
            {
                "name": svc_name,
                "image": rec.spec.get("image", ""),
                "revision": rec.revision,
                "replicas": rec.replicas,
                "running": sum(1 for r in rows if r["state"] == ContainerState.RUNNING),
                "ready": sum(1 for r in rows if r["ready"]),
                "updated": sum(1 for r in rows if r["revision"] == rec.revision),
                "status": str(service_status(rec, rows, snap.now, svc_name in unplaced)),
                "labels": dict(rec.labels),
                "message": unplaced.get(svc_name, "") or notes.get(svc_name, "") or rec.rollout_reason,
                "created": iso(rec.created),
                "updated_at": iso(rec.updated),
            }
        )
    return out


def node_rows(snap: Snapshot, *, name: str | None = None) -> list[dict[str, Any]]:
    out = []
    for node_name in sorted(snap.nodes):
        if name is not None and node_name != name:
            continue
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
