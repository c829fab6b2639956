"""The control bus is authenticated, authorised and encrypted: a real nats-server configured as ``drover up``
configures its own (TLS + JWT accounts), credentials per role, refusals observed by the client."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS

from drover.controller.config import ControllerConfig
from drover.controller.main import Controller
from drover.shared import bus, wire
from drover.shared.models import ApiReply, Heartbeat, NodeRegistration
from drover.shared.security import connect_options
from drover.shared.subjects import Names
from tests.fixtures import SecureNats, wait_for

pytestmark = pytest.mark.nats


class Denied:
    """Collects the permission violations the server reports to one connection."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    async def cb(self, exc: Exception) -> None:
        if bus.is_permission_error(exc):
            self.errors.append(str(exc).lower())

    def about(self, subject: str) -> bool:
        return any(f'"{subject.lower()}"' in e for e in self.errors)


async def connect(server: SecureNats, creds: str | None, denied: Denied | None = None) -> NATS:
    return await nats.connect(
        server.url, **connect_options(creds, server.ca), error_cb=(denied or Denied()).cb, allow_reconnect=False,
        connect_timeout=3,
    )


async def as_role(
    server: SecureNats, cluster: str, role: str, node: str | None = None
) -> tuple[NATS, NATS, Denied]:
    """An admin connection that has created the cluster's buckets (as the controller would), and one with
    ``role``'s fresh credentials whose permission violations are collected."""
    admin = await connect(server, server.admin)
    await bus.open_store(admin, cluster)
    denied = Denied()
    return admin, await connect(server, server.creds(role, cluster, node), denied), denied


async def refused_put(kv: Any, key: str, denied: Denied, subject: str) -> bool:
    """A KV put the server must refuse: no ack comes, and the client is told of a permission violation."""
    with pytest.raises(Exception):  # noqa: B017 - the put times out: the refused publish has no reply
        await asyncio.wait_for(kv.put(key, b"forged"), 3)
    return await wait_for(lambda: denied.about(subject), timeout=5, message=f"no permission violation for {subject}")


async def test_anonymous_connection_is_refused(secure_nats: SecureNats) -> None:
    with pytest.raises(Exception) as info:
        await connect(secure_nats, None)
    assert "authorization" in repr(info.value).lower() or "no servers" in repr(info.value).lower()
    # With the CA, the TLS handshake succeeds: the refusal is the server's authentication.
    admin = await connect(secure_nats, secure_nats.admin)
    await admin.close()


async def test_plain_tcp_connection_is_refused(secure_nats: SecureNats) -> None:
    port = int(secure_nats.url.rsplit(":", 1)[1])

    def plain_session() -> tuple[bytes, bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.settimeout(5)
            info = s.recv(4096)  # the server sends INFO before TLS
            s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
            rest = b""
            try:
                while chunk := s.recv(4096):
                    rest += chunk
            except OSError:
                pass
            return info, rest

    info, rest = await asyncio.to_thread(plain_session)
    assert info.startswith(b"INFO") and b'"tls_required":true' in info
    assert b"PONG" not in rest  # never served in plaintext
    # A client that does not trust the cluster CA cannot complete TLS either.
    with pytest.raises(Exception):  # noqa: B017
        await nats.connect(secure_nats.url, allow_reconnect=False, connect_timeout=3, error_cb=Denied().cb)


async def test_agent_credentials_are_bound_to_their_node(secure_nats: SecureNats, cluster_name: str) -> None:
    names = Names(cluster_name)
    admin, nc, denied = await as_role(secure_nats, cluster_name, "agent", "n1")
    store = await bus.open_store(admin, cluster_name)
    await store.assignments.put("n2", b"assignment of n2")
    try:
        mine = await bus.open_store(nc, cluster_name)
        await mine.nodes.put("n1", NodeRegistration(name="n1").to_wire())  # its own registration: allowed
        await nc.publish(names.heartbeat("n1"), Heartbeat(node="n1").to_wire())
        await nc.flush()
        assert denied.errors == []

        assert await refused_put(mine.services, "web", denied, f"$KV.{names.services_bucket}.web")
        assert await refused_put(mine.nodes, "n2", denied, f"$KV.{names.nodes_bucket}.n2")
        assert await refused_put(mine.assignments, "n2", denied, f"$KV.{names.assignments_bucket}.n2")
        assert await refused_put(mine.assignments, "n1", denied, f"$KV.{names.assignments_bucket}.n1")
        await nc.publish(names.heartbeat("n2"), Heartbeat(node="n2").to_wire())
        await wait_for(lambda: denied.about(names.heartbeat("n2")), timeout=5)
        await nc.publish(f"$KV.{names.leader_bucket}.lease", b"forged")
        await wait_for(lambda: denied.about(f"$KV.{names.leader_bucket}.lease"), timeout=5)
        assert (await store.assignments.get("n2")).value == b"assignment of n2"
        # Nor can it listen to others' replies (API answers, logs): only its own inbox.
        await nc.subscribe("_INBOX.>")
        await wait_for(lambda: any("subscription" in e and '"_inbox.>"' in e for e in denied.errors), timeout=5)
    finally:
        await nc.close()
        await admin.close()


async def test_clients_cannot_read_the_gossip_key(secure_nats: SecureNats, cluster_name: str) -> None:
    names = Names(cluster_name)
    admin, nc, denied = await as_role(secure_nats, cluster_name, "client")
    try:
        js = nc.jetstream(timeout=2)
        with pytest.raises(Exception):  # noqa: B017
            await js.key_value(names.config_bucket)
        await wait_for(lambda: denied.about(f"$JS.API.STREAM.INFO.KV_{names.config_bucket}"), timeout=5)
    finally:
        await nc.close()
        await admin.close()


@pytest.fixture
async def secure_controller(secure_nats: SecureNats, cluster_name: str) -> AsyncIterator[Controller]:
    ctl = Controller(
        ControllerConfig(
            nats_url=secure_nats.url, cluster=cluster_name, node_grace=3.0,
            creds=secure_nats.creds("controller", cluster_name), ca=secure_nats.ca,
        )
    )
    await ctl.start()
    yield ctl
    await ctl.stop()


def drover_cli(server: SecureNats, cluster: str, creds: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROVER_")}
    env["DROVER_HOME"] = str(server.workdir / "home")  # no context: flags only
    return subprocess.run(
        [sys.executable, "-m", "drover", "--nats", server.url, "--cluster", cluster, "--creds", creds,
         "--ca", server.ca, *args],
        capture_output=True, text=True, timeout=60, env=env,
    )


MANIFEST = """apiVersion: drover/v1
kind: Service
metadata: {name: web}
spec:
  image: local/busybox:latest
  command: ["httpd", "-f", "-p", "8080"]
  replicas: 1
"""


async def test_read_only_client_cannot_apply_or_scale(
    secure_nats: SecureNats, secure_controller: Controller, cluster_name: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "web.yaml"
    manifest.write_text(MANIFEST)
    # Issued while the server runs: accepted at once, no restart.
    writer = secure_nats.creds("client", cluster_name)
    reader = secure_nats.creds("client-read-only", cluster_name)

    r = await asyncio.to_thread(drover_cli, secure_nats, cluster_name, reader, "apply", "-f", str(manifest))
    assert r.returncode == 1, r
    assert "permission denied" in r.stderr and "Traceback" not in r.stderr

    r = await asyncio.to_thread(drover_cli, secure_nats, cluster_name, writer, "apply", "-f", str(manifest))
    assert r.returncode == 0, r.stderr
    assert "service/web created" in r.stdout

    r = await asyncio.to_thread(drover_cli, secure_nats, cluster_name, reader, "scale", "web", "3")
    assert r.returncode == 1 and "permission denied" in r.stderr, r
    r = await asyncio.to_thread(drover_cli, secure_nats, cluster_name, reader, "get", "services", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert '"replicas": 1' in r.stdout

    agent = secure_nats.creds("agent", cluster_name, "n1")
    r = await asyncio.to_thread(drover_cli, secure_nats, cluster_name, agent, "apply", "-f", str(manifest))
    assert r.returncode == 1 and "permission denied" in r.stderr, r


async def test_forged_heartbeat_body_changes_nothing(
    secure_nats: SecureNats, secure_controller: Controller, cluster_name: str
) -> None:
    names = Names(cluster_name)
    nc = await connect(secure_nats, secure_nats.creds("agent", cluster_name, "n1"))
    client = await connect(secure_nats, secure_nats.creds("client", cluster_name))

    async def nodes() -> list[str]:
        msg = await client.request(names.api("get_nodes"), wire.encode({"name": None}), timeout=5)
        return sorted(row["name"] for row in ApiReply.from_wire(msg.data).data)

    try:
        await nc.publish(names.heartbeat("n1"), Heartbeat(node="n1", time=time.time()).to_wire())
        await wait_for(lambda: secure_controller.state.nodes.get("n1") is not None, timeout=10)
        # Node n1's credentials, n1's subject, a body about n2: dropped, n2 stays unknown.
        for seq in range(5):
            await nc.publish(names.heartbeat("n1"), Heartbeat(node="n2", seq=seq, time=time.time()).to_wire())
        await nc.flush()
        before = secure_controller.metrics.bad_messages._value.get()
        await nc.publish(names.heartbeat("n1"), Heartbeat(node="n2", time=time.time()).to_wire())
        await wait_for(lambda: secure_controller.metrics.bad_messages._value.get() > before, timeout=10)
        assert "n2" not in secure_controller.state.nodes
        assert await nodes() == ["n1"]
    finally:
        await nc.close()
        await client.close()


async def test_registration_is_bound_to_its_key(
    secure_nats: SecureNats, secure_controller: Controller, cluster_name: str
) -> None:
    names = Names(cluster_name)
    nc = await connect(secure_nats, secure_nats.creds("agent", cluster_name, "n1"))
    client = await connect(secure_nats, secure_nats.creds("client", cluster_name))
    try:
        store = await bus.open_store(nc, cluster_name)
        # Its own key (the only one it may write), a body that claims to be n2.
        await store.nodes.put("n1", NodeRegistration(name="n2", address="10.9.9.9").to_wire())
        await nc.publish(names.heartbeat("n1"), Heartbeat(node="n1", time=time.time()).to_wire())

        async def rows() -> list[dict[str, Any]]:
            msg = await client.request(names.api("get_nodes"), wire.encode({"name": None}), timeout=5)
            return list(ApiReply.from_wire(msg.data).data)

        async def seen() -> bool:
            return any(r["address"] == "10.9.9.9" for r in await rows())

        await wait_for(seen, timeout=10, message="registration of n1 seen")
        assert sorted(r["name"] for r in await rows()) == ["n1"]
    finally:
        await nc.close()
        await client.close()


async def test_agent_events_speak_only_for_their_node(secure_nats: SecureNats, cluster_name: str) -> None:
    """An agent publishes events only under its own node's subject (the server refuses the controllers' and
    other nodes' subjects), and a reader drops an event whose body names another node than its subject's."""
    from drover.controller.eventring import EventRing
    from drover.shared.models import Event

    names = Names(cluster_name)
    admin, nc, denied = await as_role(secure_nats, cluster_name, "agent", "n1")
    stored: list[tuple[str, bytes]] = []
    async def keep(msg: Any) -> None:
        stored.append((msg.subject, msg.data))

    sub = await admin.subscribe(names.events_all, cb=keep)
    await admin.flush()  # subscribed at the server before anything is published
    try:
        js = nc.jetstream()
        own = Event(time=1.0, kind="died", node="n1", container="r1", message="mine").to_wire()
        await js.publish(names.node_event("n1", "died"), own)  # acknowledged by the events stream
        forged = Event(time=1.0, kind="node-lost", node="n2", message="forged").to_wire()
        for subject in (names.event("node-lost"), names.node_event("n2", "node-lost")):
            await nc.publish(subject, forged)
            await wait_for(lambda s=subject: denied.about(s), timeout=5, message=f"{subject} not refused")
        # Allowed subject, body about another node: stored, but no reader takes it as n2's.
        await js.publish(names.node_event("n1", "node-lost"), forged)
        await wait_for(lambda: len(stored) == 2, timeout=5, message="the events did not reach the stream")
        bad: list[int] = []
        ring = EventRing(10, on_bad=lambda: bad.append(1))
        for item in stored:
            ring.append(item)
        assert [(e.kind, e.node) for e in ring] == [("died", "n1")] and bad == [1]
    finally:
        await sub.unsubscribe()
        await nc.close()
        await admin.close()

