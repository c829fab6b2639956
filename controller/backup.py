"""``drover snapshot save|restore``: all desired state in one versioned document, and back.

A snapshot holds every service record (spec, replicas, revision history, rollout state), every secret as
stored (still encrypted with the cluster's secret key) and every node's operator controls (cordon, drain).
Restoring writes them into this cluster, replacing services and secrets of the same names and leaving other
services alone. Secrets sealed with another cluster's key are re-sealed with this cluster's key when that
cluster's key is given (``--key FILE``); without it they must open with this cluster's own key.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from drover.controller import secrets as secrets_api
from drover.shared.errors import ValidationError, WireError
from drover.shared.models import NodeControl, ServiceRecord
from drover.shared.secretbox import SecretBox, SecretKeyError, SecretRecord

if TYPE_CHECKING:
    from drover.controller.main import Controller

FORMAT = "drover-snapshot"
VERSION = 1


async def snapshot_save(ctl: Controller, body: dict[str, Any]) -> Any:
    services = [rec.model_dump(mode="json") for rec in ctl.snapshot().services.values() if not rec.deleted]
    secrets: list[dict[str, Any]] = []
    if ctl.secrets is not None:
        for name in await ctl.secrets.names():
            got = await ctl.secrets.get(name)
            if got is not None:
                secrets.append(got[0].model_dump(mode="json", exclude={"used_by"}))
    controls = {name: c.model_dump(mode="json") for name, c in ctl.state.controls.items()}
    return {
        "format": FORMAT,
        "version": VERSION,
        "cluster": ctl.cfg.cluster,
        "created": time.time(),
        "services": sorted(services, key=lambda s: str(s.get("name"))),
        "secrets": secrets,
        "node_controls": controls,
    }


def parse(doc: Any) -> tuple[list[ServiceRecord], list[SecretRecord], dict[str, NodeControl]]:
    """The records of a snapshot document; ``ValidationError`` naming what is wrong (pure)."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValidationError([("snapshot", "not a drover snapshot")])
    if doc.get("version") != VERSION:
        raise ValidationError([("snapshot.version", f"version {doc.get('version')!r} is not supported "
                                                     f"(this drover reads version {VERSION})")])
    problems: list[tuple[str, str]] = []
    services: list[ServiceRecord] = []
    secrets: list[SecretRecord] = []
    controls: dict[str, NodeControl] = {}
    for i, s in enumerate(doc.get("services") or []):
        try:
            services.append(ServiceRecord.from_dict(s if isinstance(s, dict) else {}))
        except WireError as exc:
            problems.append((f"snapshot.services[{i}]", str(exc)))
    for i, s in enumerate(doc.get("secrets") or []):
        try:
            secrets.append(SecretRecord.from_dict(s if isinstance(s, dict) else {}))
        except WireError as exc:
            problems.append((f"snapshot.secrets[{i}]", str(exc)))
    raw = doc.get("node_controls") or {}
    for node, c in (raw.items() if isinstance(raw, dict) else []):
        try:
            controls[str(node)] = NodeControl.from_dict(c if isinstance(c, dict) else {})
        except WireError as exc:
            problems.append((f"snapshot.node_controls.{node}", str(exc)))
    if problems:
        raise ValidationError(problems)
    return services, secrets, controls


async def snapshot_restore(ctl: Controller, body: dict[str, Any]) -> Any:
    services, secrets, controls = parse(body.get("snapshot"))
    key = body.get("key")
    source = SecretBox(key) if isinstance(key, bytes) else None
    store = secrets_api.store_of(ctl) if secrets else None
    # Open every secret first: a wrong key must restore nothing rather than half.
    plain: list[tuple[SecretRecord, bytes]] = []
    for rec in secrets:
        assert store is not None
        try:
            plain.append((rec, (source or store.box).open(rec)))
        except SecretKeyError:
            hint = "" if source else " (from another cluster? give its key with --key FILE)"
            raise ValidationError([(f"secret {rec.name}", f"cannot be decrypted with this key{hint}")]) from None
    for rec, data in plain:
        assert store is not None
        await store.put(rec.name, data, time.time())
    for svc in services:
        await ctl.store.services.put(svc.name, svc.model_copy(update={"deleted": False}).to_wire())
    for node, control in controls.items():
        await ctl.store.nodectl.put(node, control.to_wire())
        ctl.state.set_control(node, control)
    ctl.kick()
    await ctl.emit("snapshot-restored", message=f"restored {len(services)} service(s), {len(secrets)} secret(s), "
                                                f"{len(controls)} node control(s)")
    return {"services": [s.name for s in services], "secrets": [s.name for s in secrets], "node_controls":
            sorted(controls)}
