"""An agent reads its own assignment and no other node's, enforced by a real nats-server with auth: direct
gets and watches go through the subjects that name the key (``shared/ownkey.py``)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from drover.agent.config import AgentConfig
from drover.agent.main import Agent
from drover.controller.heartbeats import HeartbeatIntake
from drover.shared import bus
from drover.shared.cluster_key import cluster_key
from drover.shared.models import Assignment
from drover.shared.ownkey import (
    KeyUpdate,
    OwnKeyWatch,
    consumer_create_subject,
    direct_get_subject,
    key_subject,
    own_key_reader,
    stream_of,
)
from drover.shared.subjects import Names
from tests.fixtures import SecureNats, wait_for
from tests.integration.agent_support import replica
from tests.integration.test_security import Denied, as_role, connect

pytestmark = pytest.mark.nats


async def next_update(watch: OwnKeyWatch, timeout: float = 15.0) -> KeyUpdate:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        update = await watch.updates(timeout=1.0)
        if update is not None:
            return update
    raise AssertionError(f"no update of {watch.key} within {timeout} s")


async def test_agent_reads_and_watches_only_its_own_assignment(secure_nats: SecureNats, cluster_name: str) -> None:
    names = Names(cluster_name)
    bucket = names.assignments_bucket
    admin, nc, denied = await as_role(secure_nats, cluster_name, "agent", "n1")
    store = await bus.open_store(admin, cluster_name)
    await store.assignments.put("n1", b"one")
    await store.assignments.put("n2", b"secret of n2")
    try:
        reader = own_key_reader(nc, bucket)
        assert (await reader.get("n1")).value == b"one"
        watch = await OwnKeyWatch(nc, bucket, "n1", idle_heartbeat=1.0).start()
        first = await next_update(watch)
        assert first.value == b"one"
        await store.assignments.put("n1", b"two")
        second = await next_update(watch)
        assert (second.value, second.revision > first.revision) == (b"two", True)
        await store.assignments.delete("n1")
        assert (await next_update(watch)).value is None
        assert denied.errors == []

        # Node n2's assignment: the direct get and the filtered consumer of its key are refused by the server.
        with pytest.raises(Exception):  # noqa: B017 - the refused request gets no reply
            await asyncio.wait_for(reader.get("n2"), 3)
        await wait_for(lambda: denied.about(direct_get_subject(bucket, "n2")), timeout=5)
        with pytest.raises(Exception):  # noqa: B017
            await asyncio.wait_for(OwnKeyWatch(nc, bucket, "n2").start(), 5)
        prefix, suffix = consumer_create_subject(bucket, "n2").lower().split("*")
        await wait_for(lambda: any(prefix in e and suffix in e for e in denied.errors),
                       timeout=5, message="no violation for n2's consumer")
        # The generic forms (nats-py's own get and watch, a get by sequence) are refused as well.
        js = nc.jetstream(timeout=3)
        for subject in (f"$JS.API.CONSUMER.CREATE.{stream_of(bucket)}", f"$JS.API.STREAM.MSG.GET.{stream_of(bucket)}",
                        f"$JS.API.DIRECT.GET.{stream_of(bucket)}"):
            with pytest.raises(Exception):  # noqa: B017
                await js._nc.request(subject, json.dumps({"seq": 2}).encode(), timeout=3)
            await wait_for(lambda s=subject: denied.about(s), timeout=5, message=f"no violation for {subject}")
        kv = await js.key_value(bucket)  # opening the bucket (its stream info) is allowed; reading is not
        with pytest.raises(Exception):  # noqa: B017
            await asyncio.wait_for(kv.watch("n2"), 5)
        await watch.stop()
    finally:
        await nc.close()
        await admin.close()


async def test_own_subject_with_another_keys_filter_is_refused(secure_nats: SecureNats, cluster_name: str) -> None:
    """The server checks the body's filter against the one in the subject: n1's permitted create subject
    cannot carry a consumer of n2's key (one filter or several)."""
    names = Names(cluster_name)
    bucket = names.assignments_bucket
    admin, nc, _denied = await as_role(secure_nats, cluster_name, "agent", "n1")
    store = await bus.open_store(admin, cluster_name)
    await store.assignments.put("n2", b"secret of n2")
    try:
        inbox = nc.new_inbox()
        got: list[bytes] = []

        async def collect(msg: object) -> None:
            got.append(getattr(msg, "data", b""))

        await nc.subscribe(inbox, cb=collect)
        bodies = [
            {"filter_subject": key_subject(bucket, "n2")},
            {"filter_subjects": [key_subject(bucket, "n2")]},
            {"filter_subjects": [key_subject(bucket, "n1"), key_subject(bucket, "n2")]},
            {"filter_subject": f"$KV.{bucket}.>"},
        ]
        for i, extra in enumerate(bodies):
            config = {"name": f"x{i}", "deliver_subject": inbox, "ack_policy": "none",
                      "deliver_policy": "last_per_subject", **extra}
            req = {"stream_name": stream_of(bucket), "config": config}
            reply = await nc.request(consumer_create_subject(bucket, "n1", f"x{i}"), json.dumps(req).encode(),
                                     timeout=5)
            assert "error" in json.loads(reply.data), (extra, reply.data)
        await nc.flush()
        assert b"secret of n2" not in got
    finally:
        await nc.close()
        await admin.close()


async def test_own_key_watch_survives_a_server_restart(secure_nats: SecureNats, cluster_name: str) -> None:
    names = Names(cluster_name)
    bucket = names.assignments_bucket
    admin = await connect(secure_nats, secure_nats.admin)
    store = await bus.open_store(admin, cluster_name)
    await store.assignments.put("n1", b"before")
    await admin.close()
    import nats

    denied = Denied()
    nc: NATS = await nats.connect(
        secure_nats.url, **_opts(secure_nats, cluster_name), error_cb=denied.cb, max_reconnect_attempts=-1,
        reconnect_time_wait=0.2, connect_timeout=3,
    )
    try:
        watch = await OwnKeyWatch(nc, bucket, "n1", idle_heartbeat=1.0).start()
        assert (await next_update(watch)).value == b"before"
        await secure_nats.server.astop()
        await secure_nats.server.astart()
        await wait_for(lambda: nc.is_connected, timeout=20, message="agent reconnected")
        admin = await connect(secure_nats, secure_nats.admin)
        store = await bus.open_store(admin, cluster_name)
        await store.assignments.put("n1", b"after")
        # The consumer (in memory, on the restarted server) is gone: the watch starts another one and
        # delivers the key's current value.
        seen: list[bytes | None] = []
        while b"after" not in seen:
            seen.append((await next_update(watch, timeout=30)).value)
        assert watch.restarts >= 1
        assert denied.errors == []
        await watch.stop()
        await admin.close()
    finally:
        await nc.close()


def _opts(server: SecureNats, cluster: str) -> dict[str, object]:
    from drover.shared.security import connect_options

    return connect_options(server.creds("agent", cluster, "n1"), server.ca)


async def test_agent_with_node_credentials_follows_its_assignment(
    secure_nats: SecureNats, cluster_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The agent daemon itself, with n1's credentials: it runs what n1 is assigned (sim driver), through a
    server restart, and its connection is never refused anything."""
    from drover.shared.models import Heartbeat

    names = Names(cluster_name)
    admin = await connect(secure_nats, secure_nats.admin)
    store = await bus.open_store(admin, cluster_name)
    beats: dict[str, Heartbeat] = {}

    def record(hb: Heartbeat, _now: float) -> bool:
        beats[hb.node] = hb
        return True

    intake = HeartbeatIntake(lambda _node, _now: False, record)  # heartbeats come in parts: assembled here

    async def on_hb(msg: Any) -> None:
        intake.feed(names.heartbeat_node(msg.subject) or "", msg.data, time.time())

    def running(ids: set[str]) -> bool:
        hb = beats.get("n1")
        return hb is not None and {c.id for c in hb.containers if c.state == "running"} == ids

    await admin.subscribe(names.heartbeat_all, cb=on_hb)
    await cluster_key(store)  # the gossip key, made by the controller (an agent may only read it)
    await store.assignments.put("n2", Assignment(node="n2", term=1, containers=[replica("b1")]).to_wire())
    await store.assignments.put("n1", Assignment(node="n1", term=1, containers=[replica("a1")]).to_wire())
    cfg = AgentConfig(
        nats_url=secure_nats.url, node="n1", cluster=cluster_name, heartbeat_interval=0.2, driver="sim",
        data_dir=str(tmp_path / "n1"), creds=secure_nats.creds("agent", cluster_name, "n1"), ca=secure_nats.ca,
        resync_interval=1.0,
    )
    agent = Agent(cfg)
    await asyncio.wait_for(agent.start(), 30)
    try:
        await wait_for(lambda: running({"a1"}), 20, message="a1 running on n1")
        await store.assignments.put(
            "n1", Assignment(node="n1", generation=2, term=1, containers=[replica("a1"), replica("a2")]).to_wire()
        )
        await wait_for(lambda: running({"a1", "a2"}), 20, message="a2 from the watch")
        await admin.close()
        await secure_nats.server.astop()
        await secure_nats.server.astart()
        admin = await connect(secure_nats, secure_nats.admin)
        store = await bus.open_store(admin, cluster_name)
        beats.clear()
        await admin.subscribe(names.heartbeat_all, cb=on_hb)
        await store.assignments.put(
            "n1", Assignment(node="n1", generation=3, term=1, containers=[replica("a3")]).to_wire()
        )
        await wait_for(lambda: running({"a3"}), 30, message="a3 after the server restart")
        assert "n2" not in beats
        assert "permissions violation" not in capsys.readouterr().out
    finally:
        await agent.stop()
        await admin.close()


async def test_own_key_watch_starts_again_when_its_consumer_is_lost(
    secure_nats: SecureNats, cluster_name: str
) -> None:
    """A consumer gone without a reconnect (the server holding it died, or it was deleted): the missing
    heartbeats make the watch start a new one, which delivers the key's current value."""
    names = Names(cluster_name)
    bucket = names.assignments_bucket
    admin, nc, denied = await as_role(secure_nats, cluster_name, "agent", "n1")
    store = await bus.open_store(admin, cluster_name)
    await store.assignments.put("n1", b"first")
    try:
        watch = await OwnKeyWatch(nc, bucket, "n1", idle_heartbeat=0.5).start()
        assert (await next_update(watch)).value == b"first"
        await admin.jsm().delete_consumer(stream_of(bucket), watch.consumer)
        await store.assignments.put("n1", b"second")
        assert (await next_update(watch, timeout=20)).value == b"second"
        assert watch.restarts == 1 and denied.errors == []
        await watch.stop()
    finally:
        await nc.close()
        await admin.close()


async def test_controller_turns_on_direct_gets_of_an_older_assign_bucket(
    secure_nats: SecureNats, cluster_name: str
) -> None:
    """A cluster made by an older drover: its assign bucket has no direct gets, so an agent could not read
    its own key; the controller's store turns them on, keeping the bucket's values."""
    from nats.js.api import KeyValueConfig, StorageType

    names = Names(cluster_name)
    admin = await connect(secure_nats, secure_nats.admin)
    old = await admin.jetstream().create_key_value(
        KeyValueConfig(bucket=names.assignments_bucket, history=1, storage=StorageType.FILE)
    )
    await old.put("n1", b"kept")
    assert not (await admin.jetstream().stream_info(stream_of(names.assignments_bucket))).config.allow_direct
    ctl = await connect(secure_nats, secure_nats.creds("controller", cluster_name))
    agent = await connect(secure_nats, secure_nats.creds("agent", cluster_name, "n1"))
    try:
        store = await bus.open_store(ctl, cluster_name, manage=True)  # as the controller opens it
        info = await admin.jetstream().stream_info(stream_of(names.assignments_bucket))
        assert info.config.allow_direct and info.config.max_msgs_per_subject == 1
        assert (await store.assignments.get("n1")).value == b"kept"
        assert (await own_key_reader(agent, names.assignments_bucket).get("n1")).value == b"kept"
    finally:
        await agent.close()
        await ctl.close()
        await admin.close()
