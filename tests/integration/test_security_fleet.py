"""Fleet credentials (``drover credentials agent 'P-*'``) are bound to their prefix: on a real secured
nats-server with a controller, a fleet speaks only on subjects carrying its prefix token (server-enforced), and
the controller takes only nodes named ``<prefix>-…`` from them (application-enforced, tested here too)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.js.errors import KeyNotFoundError

from drover.agent.fleet import FleetConfig, HollowFleet
from drover.controller.config import ControllerConfig
from drover.controller.main import Controller
from drover.shared import bus, wire
from drover.shared.models import ApiReply, Heartbeat, NodeRegistration
from drover.shared.subjects import Names
from tests.fixtures import SecureNats, wait_for
from tests.integration.test_security import as_role, connect, refused_put

pytestmark = pytest.mark.nats


@pytest.fixture
async def controller(secure_nats: SecureNats, cluster_name: str) -> AsyncIterator[Controller]:
    ctl = Controller(ControllerConfig(
        nats_url=secure_nats.url, cluster=cluster_name, node_grace=5.0,
        creds=secure_nats.creds("controller", cluster_name), ca=secure_nats.ca,
    ))
    await ctl.start()
    yield ctl
    await ctl.stop()


async def test_fleet_credentials_are_bound_to_their_prefix(
    secure_nats: SecureNats, controller: Controller, cluster_name: str
) -> None:
    names = Names(cluster_name)
    admin, nc, denied = await as_role(secure_nats, cluster_name, "agent", "P-*")
    store = await bus.open_store(admin, cluster_name)

    async def register(subject: str, node: str) -> dict[str, Any]:
        msg = await nc.request(subject, NodeRegistration(name=node).to_wire(), timeout=10)
        return dict(wire.decode(msg.data))

    async def registered(node: str) -> bool:
        try:
            return (await store.nodes.get(node)).value is not None
        except KeyNotFoundError:
            return False

    try:
        # Its own prefix: registered by the controller, heartbeats taken.
        assert (await register(names.fleet("P", "register", "P-1"), "P-1"))["ok"] is True
        assert await registered("P-1")
        await nc.publish(names.fleet("P", "hb", "P-1"), Heartbeat(node="P-1").to_wire())
        await wait_for(lambda: controller.state.nodes.get("P-1") is not None
                       and controller.state.nodes["P-1"].last_heartbeat is not None, timeout=10)
        assert denied.errors == []

        # Another node under its own prefix token: allowed by the server, refused by the controller.
        reply = await register(names.fleet("P", "register", "Q-1"), "Q-1")
        assert reply["ok"] is False and "fleet" in reply["error"]
        before = controller.metrics.bad_messages._value.get()
        await nc.publish(names.fleet("P", "hb", "Q-1"), Heartbeat(node="Q-1").to_wire())
        await wait_for(lambda: controller.metrics.bad_messages._value.get() > before, timeout=10)
        assert "Q-1" not in controller.state.nodes and not await registered("Q-1")
        # A registration body about another node on its own node's subject.
        reply = await register(names.fleet("P", "register", "P-2"), "P-9")
        assert reply["ok"] is False and not await registered("P-9") and not await registered("P-2")

        # Another prefix token, and every per-node subject: refused by the server.
        for subject in (names.fleet("Q", "hb", "Q-1"), names.heartbeat("P-1"), names.heartbeat("Q-1"),
                        names.secret_read("P-1")):
            await nc.publish(subject, b"{}")
            await wait_for(lambda s=subject: denied.about(s), timeout=5, message=f"no violation for {subject}")
        with pytest.raises(Exception):  # noqa: B017 - a refused request gets no reply
            await register(names.fleet("Q", "register", "Q-1"), "Q-1")
        await wait_for(lambda: denied.about(names.fleet("Q", "register", "Q-1")), timeout=5)
        mine = await bus.open_store(nc, cluster_name)
        for key in ("P-1", "Q-1"):
            assert await refused_put(mine.nodes, key, denied, f"$KV.{names.nodes_bucket}.{key}")
        assert await refused_put(mine.services, "web", denied, f"$KV.{names.services_bucket}.web")
        assert not await registered("Q-1")
    finally:
        await nc.close()
        await admin.close()


async def test_hollow_fleet_runs_with_fleet_credentials(
    secure_nats: SecureNats, controller: Controller, cluster_name: str
) -> None:
    names = Names(cluster_name)
    fleet = HollowFleet(FleetConfig(
        nats_url=secure_nats.url, prefix="h", count=5, cluster=cluster_name, cpu=4, memory=4 << 30,
        creds=secure_nats.creds("agent", cluster_name, "h-*"), ca=secure_nats.ca,
    ))
    client = await connect(secure_nats, secure_nats.creds("client", cluster_name))
    try:
        await asyncio.wait_for(fleet.start(), 60)

        async def ready() -> list[str]:
            msg = await client.request(names.api("get_nodes"), wire.encode({"name": None}), timeout=5)
            rows = ApiReply.from_wire(msg.data).data
            return sorted(r["name"] for r in rows if r["status"] == "ready")

        await wait_for(lambda: _equal(ready, [f"h-{i}" for i in range(1, 6)]), timeout=30,
                       message="5 hollow nodes ready")
    finally:
        await fleet.stop()
        await client.close()


async def _equal(get: Any, want: list[str]) -> bool:
    return bool(await get() == want)
