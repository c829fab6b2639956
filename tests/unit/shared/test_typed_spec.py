"""The validated ServiceSpec stays typed in records, revisions and assignments, while the wire form stays the
JSON form earlier versions wrote: what they stored still decodes, hashes the same (no rollout on upgrade) and
an assignment validates each revision's spec once, however many replicas refer to it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from drover.shared import models, wire
from drover.shared.errors import WireError
from drover.shared.manifest import ServiceSpec, spec_hash
from drover.shared.models import AssignedContainer, Assignment, ServiceRecord, spec_of

# A spec as an earlier version stored it (its revision view: no ``replicas``), from before ``pull``, ``volumes``,
# ``files``, ``mode``, ``job``, ``schedule`` and ``placement.spread`` existed.
OLD_SPEC: dict[str, Any] = {
    "image": "local/busybox:latest", "command": ["httpd", "-f", "-p", "8080"], "env": {"GREETING": "hi"},
    "network": "bridge", "ports": [{"name": "http", "container": 8080, "expose": 18080, "protocol": "tcp"}],
    "resources": {"cpu": 0.1, "memory": 67108864},
    "health": {"http": {"path": "/", "port": 8080}, "tcp": None, "exec": None, "interval": 2.0, "timeout": 1.0,
               "failure_threshold": 3, "initial_delay": 0.0},
    "restart": "always", "stop_grace": 10.0,
    "update": {"max_surge": 1, "max_unavailable": 0, "min_ready": 5.0, "progress_deadline": 120.0,
               "auto_rollback": True},
    "autoscale": None, "placement": {"constraints": ["node.labels.zone == a"]},
}
# spec_hash(OLD_SPEC) as computed by the code before specs were typed (main at ade8f9d): a changed hash would
# make every controller see a new revision of every service after the upgrade, and roll every replica.
OLD_HASH = "1f340aeb94cdb107bfa34b2293f3080006874485c92edfdb97b404fb97c6fd42"


def old_record_wire() -> bytes:
    """A service record exactly as the dict-carrying code wrote it (``wire.encode(model_dump(mode="json"))``)."""
    old_rev = {**OLD_SPEC, "image": "local/busybox:1"}
    return wire.encode({
        "name": "web", "labels": {}, "spec": OLD_SPEC, "revision": 2, "replicas": 3, "autoscale_enabled": True,
        "created": 0.0, "updated": 0.0,
        "history": [{"revision": 1, "spec": old_rev, "time": 1.0, "change": "", "result": "complete"},
                    {"revision": 2, "spec": OLD_SPEC, "time": 2.0, "change": "image", "result": ""}],
        "deleted": False, "rollout_state": "progressing", "rollout_reason": "", "rollout_started": 0.0,
        "rollout_progress": 0, "rollout_progress_at": 0.0, "last_good": 1, "paused": False, "job_run": 0,
        "job_last_tick": 0.0, "job_runs": [], "last_request": "",
    })


def test_an_old_record_decodes_typed_with_the_same_hash() -> None:
    assert spec_hash(OLD_SPEC) == OLD_HASH
    rec = ServiceRecord.from_wire(old_record_wire())
    assert isinstance(rec.spec, ServiceSpec) and rec.spec.image == "local/busybox:latest"
    assert rec.spec.pull == "if-missing" and rec.spec.volumes == [] and rec.spec.mode == "service"  # newer fields
    assert rec.spec.health is not None and rec.spec.health.http is not None and rec.spec.health.http.port == 8080
    assert spec_hash(rec.spec) == OLD_HASH  # the revision identity survives the upgrade
    first = rec.revision_spec(1)
    assert first is not None and first.image == "local/busybox:1"
    assert rec.revision_spec(2) is rec.spec  # one validated object for one spec
    # Written back, the record is the old form with the newer fields' defaults spelt out, still without replicas.
    again = wire.decode(rec.to_wire())
    assert again["spec"] == ServiceSpec.model_validate(OLD_SPEC).stored and "replicas" not in again["spec"]
    assert spec_hash(again["spec"]) == OLD_HASH
    assert ServiceRecord.from_wire(rec.to_wire()) == rec


def test_a_stored_spec_is_written_back_byte_for_byte() -> None:
    full = spec_of(OLD_SPEC).stored
    body = wire.decode(old_record_wire())
    body["spec"] = full
    for h in body["history"]:
        h["spec"] = {**full, "image": h["spec"]["image"]}
    stored = wire.encode(body)
    assert ServiceRecord.from_wire(stored).to_wire() == stored


def test_old_assignment_forms_decode() -> None:
    # The oldest form: the spec inside every container.
    per_container = wire.encode({"node": "n1", "generation": 4, "term": 2, "containers": [
        {"id": f"r{i}", "service": "web", "revision": 2, "spec": OLD_SPEC, "restarts": i} for i in range(3)]})
    # The form before typed specs: each revision's spec once per service section.
    sectioned = wire.encode({"node": "n1", "generation": 4, "term": 2, "services": {"web": {
        "specs": {"2": OLD_SPEC},
        "replicas": [{"id": f"r{i}", "revision": 2, "restarts": i} for i in range(3)]}}})
    for data in (per_container, sectioned):
        a = Assignment.from_wire(data)
        assert [(c.id, c.service, c.revision, c.restarts) for c in a.containers] == [
            ("r0", "web", 2, 0), ("r1", "web", 2, 1), ("r2", "web", 2, 2)]
        assert all(isinstance(c.spec, ServiceSpec) and spec_hash(c.spec) == OLD_HASH for c in a.containers)
        assert a.containers[0].spec.resources.memory == 64 * 1024 * 1024
        # Written again in the section form, which decodes to the same.
        assert Assignment.from_wire(a.to_wire()) == a


def test_ten_thousand_replicas_share_one_validated_spec() -> None:
    spec = spec_of(OLD_SPEC)
    other = spec_of({**OLD_SPEC, "image": "local/busybox:2"})
    a = Assignment(node="n1", containers=[
        AssignedContainer(id=f"r{i}", service="web", revision=1 + i % 2, spec=spec if i % 2 == 0 else other)
        for i in range(10_000)])
    data = a.to_wire()
    body = wire.decode(data)
    assert len(body["services"]["web"]["specs"]) == 2  # each revision's spec once on the wire
    decoded = Assignment.from_wire(data)
    # One ServiceSpec per revision for the 10,000 replicas: validated (at most) once each, not once per replica.
    assert len({id(c.spec) for c in decoded.containers}) == 2
    assert {c.spec.image for c in decoded.containers} == {"local/busybox:latest", "local/busybox:2"}


def test_a_stored_spec_that_no_longer_validates_is_a_damaged_record() -> None:
    body = wire.decode(old_record_wire())
    body["spec"] = {**OLD_SPEC, "placement": {"constraints": ["node.labels.zone == a b"]}}
    with pytest.raises(WireError, match=r"spec\.placement"):
        ServiceRecord.from_wire(wire.encode(body))


def test_specs_are_frozen_and_copies_never_share_a_stale_json_form() -> None:
    spec = spec_of(copy.deepcopy(OLD_SPEC))
    with pytest.raises(Exception, match="frozen"):
        spec.image = "other"  # type: ignore[misc]
    assert spec.stored["image"] == "local/busybox:latest"
    changed = spec.model_copy(update={"image": "local/busybox:2"})
    assert changed.stored["image"] == "local/busybox:2" and spec.stored["image"] == "local/busybox:latest"
    # The same spec written with or without its defaults is one shared object.
    assert spec_of(OLD_SPEC) is spec_of(spec.stored) is spec


def test_the_spec_cache_is_bounded_by_count_and_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "SPEC_CACHE_BYTES", 200_000)
    big = [spec_of({"image": "local/busybox:latest", "env": {"PAD": f"{i}" + "x" * 50_000}}) for i in range(10)]
    assert models._specs_bytes <= 200_000 and len(models._specs) <= 4  # a few 50 KB specs, not all ten
    assert models._specs_bytes == sum(len(k) for k in models._specs)
    assert spec_of(big[-1].stored) is big[-1]  # the newest is still there
    monkeypatch.setattr(models, "SPEC_CACHE_SIZE", 3)
    for i in range(5):
        spec_of({"image": f"local/busybox:{i}"})
    assert len(models._specs) <= 3
