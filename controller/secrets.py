"""Secrets on the controller: ``secret create|list|delete`` and the agents' reads.

Plaintext exists only in a create request, in memory here, and in the reply to an agent that runs a replica
whose spec uses the secret (asked on ``drover.<cluster>.secrets.<node>``: one subject per node so the
security roles can let an agent ask only as itself). A changed secret makes a new revision of every service
that uses it, which rolls out like any other change. Nothing here logs or emits a secret's bytes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from drover.controller import records
from drover.shared import wire
from drover.shared.bus import bucket_keys
from drover.shared.errors import NotFoundError, ValidationError, WireError
from drover.shared.manifest import ServiceSpec
from drover.shared.models import AssignedContainer, ServiceRecord
from drover.shared.secretbox import SecretBox, SecretKeyError, SecretRecord, load_or_create_key
from drover.shared.workloads import secret_name, secrets_used

if TYPE_CHECKING:
    from drover.controller.main import Controller

MAX_SECRET = 512 * 1024  # bytes; a secret travels in one NATS message


def users(services: dict[str, ServiceRecord], name: str) -> list[str]:
    """The services whose desired spec uses secret ``name`` (pure)."""
    return sorted(s.name for s in services.values() if not s.deleted and name in secrets_used(s.spec))


def node_may_read(containers: list[AssignedContainer], name: str) -> bool:
    """Whether a node's assigned containers include one whose spec uses secret ``name`` (pure)."""
    return any(name in secrets_used(c.spec) for c in containers)


class Secrets:
    """The secrets bucket and the cluster key; narrow: a KV bucket and the key file."""

    def __init__(self, kv: KeyValue, key_file: Path):
        self.kv = kv
        self.key_file = key_file
        self._box: SecretBox | None = None

    @property
    def box(self) -> SecretBox:
        """The key is read (or made) on first use: a cluster without secrets never touches the file."""
        if self._box is None:
            self._box = SecretBox(load_or_create_key(self.key_file))
        return self._box

    async def get(self, name: str) -> tuple[SecretRecord, int] | None:
        try:
            entry = await self.kv.get(name)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return SecretRecord.from_wire(entry.value), entry.revision or 0

    async def read(self, name: str) -> bytes | None:
        got = await self.get(name)
        return None if got is None else self.box.open(got[0])

    async def names(self) -> list[str]:
        """Names with an entry, deleted ones included (``get`` returns None for those)."""
        return await bucket_keys(self.kv)

    async def put(self, name: str, data: bytes, now: float) -> str:
        """Store ``data`` as secret ``name``: ``created``, ``configured`` (new content) or ``unchanged``."""
        got = await self.get(name)
        if got is None:
            rec = self.box.seal(name, data, version=1, created=now, now=now)
            await self.kv.create(name, rec.to_wire())
            return "created"
        old, rev = got
        try:
            same = self.box.open(old) == data
        except SecretKeyError:
            same = False  # sealed with another key (a restore gone wrong): replace it
        if same:
            return "unchanged"
        rec = self.box.seal(name, data, version=old.version + 1, created=old.created, now=now)
        await self.kv.update(name, rec.to_wire(), last=rev)
        return "configured"


def store_of(ctl: Controller) -> Secrets:
    if ctl.secrets is None:
        raise SecretKeyError("this controller has no secret key")
    return ctl.secrets


async def secret_create(ctl: Controller, body: dict[str, Any]) -> Any:
    name, data = body.get("name"), body.get("data")
    if not isinstance(name, str):
        raise ValidationError([("name", "must be a secret name")])
    try:
        secret_name(name)
    except ValueError as exc:
        raise ValidationError([(name, str(exc))]) from None
    if not isinstance(data, bytes) or len(data) > MAX_SECRET:
        raise ValidationError([("data", f"must be at most {MAX_SECRET // 1024} KiB of bytes")])
    action = await store_of(ctl).put(name, data, time.time())
    if action != "unchanged":
        await ctl.emit("secret-" + action, message=f"secret {name} {action}")
    if action == "configured":
        for service in users(ctl.snapshot().services, name):
            await roll_out(ctl, service, name)
    return {"name": name, "action": action}


async def roll_out(ctl: Controller, service: str, secret: str) -> None:
    """A new revision of ``service`` (same spec) so that its replicas get the new content of ``secret``."""

    def change(old: ServiceRecord | None) -> ServiceRecord | None:
        if old is None or old.deleted or secret not in secrets_used(old.spec):
            return None
        return records.new_revision(old, old.spec, f"secret {secret} changed", time.time(), moves=False)

    _, new = await records.update_service(ctl, service, change)
    if new is not None:
        await ctl.emit("service-configured", service=service,
                       message=f"secret {secret} changed: revision {new.revision}")


async def secret_list(ctl: Controller, body: dict[str, Any]) -> Any:
    s = store_of(ctl)
    services = ctl.snapshot().services
    rows = []
    for name in await s.names():
        got = await s.get(name)
        if got is None:
            continue
        rec = got[0]
        rows.append({"name": name, "version": rec.version, "size": rec.size, "created": rec.created,
                     "updated": rec.updated, "used_by": users(services, name)})
    return rows


async def secret_delete(ctl: Controller, body: dict[str, Any]) -> Any:
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise ValidationError([("name", "must be a secret name")])
    s = store_of(ctl)
    if await s.get(name) is None:
        raise NotFoundError(f'secret "{name}" not found')
    used = users(ctl.snapshot().services, name)
    if used:
        raise ValidationError([("", f"secret {name} is used by " + ", ".join(f"service/{u}" for u in used))])
    await s.kv.delete(name)
    await ctl.emit("secret-deleted", message=f"secret {name} deleted")
    return {"name": name, "action": "deleted"}


async def missing_secrets(ctl: Controller, specs: list[tuple[str, ServiceSpec]]) -> list[tuple[str, str]]:
    """``(where, message)`` for each secret a spec uses that does not exist."""
    if ctl.secrets is None:
        return []
    problems = []
    for where, spec in specs:
        for i, f in enumerate(spec.files):
            name = f.secret
            if name is not None and await ctl.secrets.get(name) is None:
                problems.append((f"{where} spec.files[{i}].secret",
                                 f"no secret '{name}' (create it with 'drover secret create {name} ...')"))
    return problems


async def may_read(ctl: Controller, node: str, name: str) -> bool:
    """Whether ``node`` may read secret ``name``: from this controller's view of its assignment, else from the
    stored one (the agent may have watched a new assignment before this controller took in its own write's
    acknowledgement: refusing then failed every first start of a service with a secret for a retry period)."""

    def allowed() -> bool:
        assignment = ctl.state.assignments.get(node)
        return assignment is not None and node_may_read(assignment.value.containers, name)

    if allowed():
        return True
    await ctl.writer.refresh(node)
    return allowed()


def read_handler(ctl: Controller) -> Callable[[Msg], Awaitable[None]]:
    """The handler of ``drover.<cluster>.secrets.<node>``: the bytes of one secret, to that node only when
    one of its assigned containers uses it."""

    async def on_read(msg: Msg) -> None:
        node = msg.subject.rsplit(".", 1)[-1]
        reply: dict[str, Any]
        try:
            name = wire.decode(msg.data).get("name")
            if not isinstance(name, str) or not await may_read(ctl, node, name):
                reply = {"ok": False, "error": f"node {node} runs nothing that uses secret {name}"}
            else:
                data = await store_of(ctl).read(name)
                reply = {"ok": False, "error": f"no secret {name}"} if data is None else {"ok": True, "data": data}
        except (WireError, SecretKeyError) as exc:
            reply = {"ok": False, "error": str(exc)}
        if msg.reply:
            await msg.respond(wire.encode(reply))

    return on_read
