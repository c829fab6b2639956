"""Secrets work on the secured bus: the controller's credentials may write the secrets bucket, an agent may ask
for its own replicas' secrets (and only under its own name), and neither agents nor clients can read the bucket."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from drover.controller.main import Controller
from drover.shared import bus
from drover.shared.subjects import Names
from tests.fixtures import SecureNats, wait_for
from tests.integration.test_security import Denied, connect, drover_cli, secure_controller

__all__ = ["secure_controller"]  # the fixture, shared with the security tests

pytestmark = pytest.mark.nats


async def test_controller_writes_secrets_and_agents_ask_only_for_their_own(
    secure_nats: SecureNats, cluster_name: str
) -> None:
    names = Names(cluster_name)
    admin = await connect(secure_nats, secure_nats.admin)
    store = await bus.open_store(admin, cluster_name)
    await store.open_bucket(names.secrets_bucket)

    denied = Denied()
    ctl = await connect(secure_nats, secure_nats.creds("controller", cluster_name), denied)
    agent_denied = Denied()
    agent = await connect(secure_nats, secure_nats.creds("agent", cluster_name, "n1"), agent_denied)
    try:
        kv = await ctl.jetstream().key_value(names.secrets_bucket)
        await asyncio.wait_for(kv.create("db", b"sealed"), 5)  # `drover secret create` stores through this
        assert (await kv.get("db")).value == b"sealed"

        # The controllers answer on secret_read; the agent's own subject is allowed, another node's is not.
        async def answer(msg: object) -> None:
            await ctl.publish(msg.reply, b"ok")  # type: ignore[attr-defined]

        await ctl.subscribe(names.secret_read_all, cb=answer)
        await ctl.flush()
        reply = await agent.request(names.secret_read("n1"), b"{}", timeout=5)
        assert reply.data == b"ok"
        await agent.publish(names.secret_read("n2"), b"{}")
        await wait_for(lambda: agent_denied.about(names.secret_read("n2")), timeout=5)
        assert denied.errors == []
    finally:
        await agent.close()
        await ctl.close()
        await admin.close()


async def test_read_only_client_is_told_permission_denied_for_secrets_and_snapshots(
    secure_nats: SecureNats, secure_controller: Controller, cluster_name: str, tmp_path: Path
) -> None:
    reader = secure_nats.creds("client-read-only", cluster_name)
    for args in (("secret", "list"), ("snapshot", "save", str(tmp_path / "s.json"))):
        r = await asyncio.to_thread(drover_cli, secure_nats, cluster_name, reader, *args)
        assert r.returncode == 1, r
        assert "permission denied" in r.stderr and "not supported" not in r.stderr, r.stderr
    writer = secure_nats.creds("client", cluster_name)
    create = ("secret", "create", "db", "--from-literal", "pw")
    r = await asyncio.to_thread(drover_cli, secure_nats, cluster_name, writer, *create)
    assert r.returncode == 0 and "secret/db created" in r.stdout, r.stderr
