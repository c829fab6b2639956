"""Plan before apply: what ``apply`` would do to each manifest, without storing anything.

``preview`` answers ``drover diff`` and ``drover apply --dry-run``: for each manifest the action apply would
report, the stored and the desired service in one normalised form (defaults filled in, so a manifest that
spells them out compares equal to one that does not) and, for a dry run, the nodes new replicas would go to,
from the same pure ``plan`` the reconcile loop runs, on a copy of the current snapshot.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING, Any

from drover.controller.reconcile import plan
from drover.shared.errors import PermanentError, ValidationError
from drover.shared.manifest import ServiceManifest, ServiceSpec, parse_request, spec_hash
from drover.shared.models import RevisionEntry, ServiceRecord, spec_of
from drover.shared.workloads import privileged_mounts

if TYPE_CHECKING:
    from drover.controller.main import Controller


class RevisionMismatch(PermanentError):
    """``apply --if-revision N`` found another revision stored."""


def manifests_of(body: dict[str, Any], allow_privileged: bool) -> list[ServiceManifest]:
    """The request's manifests, all validated (all or nothing), privileged host mounts refused unless the
    cluster allows them. CPU-bound on a big request: callers on the event loop run it in a thread."""
    docs = body.get("manifests")
    if not isinstance(docs, list) or not docs:
        raise ValidationError([("manifests", "must be a non-empty list of Service manifests")])
    manifests = parse_request(docs)
    if not allow_privileged:
        sources = body.get("sources")
        problems: list[tuple[str, str]] = []
        for i, m in enumerate(manifests):
            where = sources[i] if isinstance(sources, list) and i < len(sources) else m.name
            problems.extend((f"{where} {path}", msg) for path, msg in privileged_mounts(m.spec))
        if problems:
            raise ValidationError(problems)
    return manifests


def if_revision(body: dict[str, Any]) -> int | None:
    value = body.get("if_revision")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError([("if_revision", "must be a revision number >= 0 (0: the service must not exist)")])
    return value


def check_revision(name: str, old: ServiceRecord | None, expected: int | None) -> None:
    """Refuse when ``--if-revision`` does not match the stored revision (0 = no such service)."""
    if expected is None:
        return
    stored = 0 if old is None or old.deleted else old.revision
    if stored != expected:
        what = f"is at revision {stored}" if stored else "does not exist"
        raise RevisionMismatch(f"service/{name} {what}, not {expected}: nothing applied")


def normalised(name: str, labels: dict[str, str], spec: ServiceSpec, replicas: int) -> dict[str, Any]:
    """A service as diff shows it: the spec with every default filled in, ``replicas`` included."""
    body = {**spec.model_dump(mode="json"), "replicas": replicas}  # in the manifest's field order
    return {"metadata": {"name": name, "labels": dict(sorted(labels.items()))}, "spec": body}


def action_for(old: ServiceRecord | None, m: ServiceManifest) -> str:
    """What ``apply`` would report for this manifest (the same rules as ``api.apply``)."""
    if old is None or old.deleted:
        return "created"
    if spec_hash(m.spec) != spec_hash(old.spec):
        return "configured"
    if m.spec.replicas != old.replicas or dict(m.metadata.labels) != old.labels or not old.autoscale_enabled:
        return "configured"
    return "unchanged"


def _would_be(old: ServiceRecord | None, m: ServiceManifest, now: float) -> ServiceRecord:
    spec = spec_of(m.spec)
    rev = 1 if old is None or old.deleted else old.max_revision() + 1
    return ServiceRecord(
        name=m.name,
        labels=dict(m.metadata.labels),
        spec=spec,
        revision=rev,
        replicas=m.spec.replicas,
        created=now,
        updated=now,
        history=[RevisionEntry(revision=rev, spec=spec, time=now, change="dry run")],
        rollout_started=now,
        rollout_progress_at=now,
    )


async def preview(ctl: Controller, body: dict[str, Any]) -> Any:
    manifests = await asyncio.to_thread(manifests_of, body, ctl.cfg.allow_privileged_mounts)
    expected = if_revision(body)
    snap = ctl.snapshot()
    now = time.time()
    results = []
    for m in manifests:
        old = snap.services.get(m.name)
        check_revision(m.name, old, expected)
        action = action_for(old, m)
        stored = None if old is None or old.deleted else normalised(old.name, old.labels, old.spec, old.replicas)
        desired = normalised(m.name, dict(m.metadata.labels), m.spec, m.spec.replicas)
        nodes: list[str] = []
        if action != "unchanged" and body.get("placements"):
            if action == "created" or old is None or spec_hash(m.spec) != spec_hash(old.spec):
                snap.services[m.name] = _would_be(old, m, now)
            elif old is not None:
                snap.services[m.name] = old.model_copy(update={"replicas": m.spec.replicas})
            # A fixed seed: a preview is a picture of one possible plan, not a promise of the random tiebreaks.
            p = plan(snap, random.Random(0))
            nodes = [e.node for e in p.events if e.kind == "scheduled" and e.service == m.name]
            if m.name in p.unplaced:
                nodes.append(f"({p.unplaced[m.name]})")
        results.append(
            {
                "kind": "service",
                "name": m.name,
                "action": action,
                "revision": old.revision if old is not None and not old.deleted else 0,
                "stored": stored,
                "desired": desired,
                "placements": nodes,
            }
        )
    return {"results": results}
