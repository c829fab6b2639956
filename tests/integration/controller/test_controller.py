"""The controller against a real nats-server, with the test playing the agents (registration + heartbeats),
so that placement, scaling, node loss and the API are checked without Docker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from drover.controller.config import ControllerConfig
from drover.controller.main import Controller
from drover.shared import bus, wire
from drover.shared.models import (
    ApiReply,
    Assignment,
    ContainerState,
    ContainerStatus,
    Heartbeat,
    NodeRegistration,
    Resources,
)
from drover.shared.subjects import Names
from tests.fixtures import ticks, wait_for
from tests.fixtures.nats import NatsServer

GiB = 1 << 30


def manifest(name: str = "web", replicas: int = 3, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "drover/v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"image": "local/busybox:latest", "replicas": replicas, "resources": {"cpu": 0.5, "memory": "64Mi"},
                 **spec},
    }


class FakeAgents:
    """Registers nodes and answers for them: every assigned replica is reported running and ready."""

    def __init__(self, nc: Any, store: bus.ClusterStore, names: Names):
        self.nc, self.store, self.names = nc, store, names
        self.alive: set[str] = set()
        self.tasks: list[asyncio.Task[None]] = []
        self.broken_images: set[str] = set()  # replicas of specs with these images crash-loop

    async def add(self, node: str, cpu: float = 2.0, labels: dict[str, str] | None = None) -> None:
        reg = NodeRegistration(name=node, address="127.0.0.1", labels=labels or {},
                               capacity=Resources(cpu=cpu, memory=4 * GiB), driver="sim", boot_id="b")
        await self.store.nodes.put(node, reg.to_wire())
        self.alive.add(node)
        self.tasks.append(asyncio.get_running_loop().create_task(self._beat(node)))

    async def _beat(self, node: str) -> None:
        seq = 0
        async for _ in ticks(0.2):
            if node in self.alive:
                containers = []
                with contextlib.suppress(Exception):
                    a = Assignment.from_wire((await self.store.assignments.get(node)).value)
                    containers = [self._status(c) for c in a.containers]
                seq += 1
                hb = Heartbeat(node=node, boot_id="b", seq=seq, time=time.time(), containers=containers)
                await self.nc.publish(self.names.heartbeat(node), hb.to_wire())

    def _status(self, c: Any) -> ContainerStatus:
        if c.spec.image in self.broken_images:
            return ContainerStatus(id=c.id, service=c.service, revision=c.revision, state=ContainerState.CRASH_LOOP,
                                   ready=False, restarts=3)
        return ContainerStatus(id=c.id, service=c.service, revision=c.revision, state=ContainerState.RUNNING,
                               ready=True, started_at=time.time())

    def stop(self) -> None:
        for t in self.tasks:
            t.cancel()


@contextlib.asynccontextmanager
async def controller_env(
    url: str, cluster_name: str, *, node_grace: float = 1.5, call_timeout: float = 5.0
) -> AsyncIterator[tuple[Controller, FakeAgents, Any]]:
    """A controller on ``url``, the fake agents and an API ``call``, all stopped on exit."""
    ctl = Controller(ControllerConfig(nats_url=url, cluster=cluster_name, node_grace=node_grace))
    await ctl.start()
    nc = await bus.connect(url, name="test")
    store = await bus.open_store(nc, cluster_name)
    agents = FakeAgents(nc, store, Names(cluster_name))

    async def call(verb: str, **body: Any) -> ApiReply:
        msg = await nc.request(Names(cluster_name).api(verb), wire.encode(body), timeout=call_timeout)
        return ApiReply.from_wire(msg.data)

    try:
        yield ctl, agents, call
    finally:
        agents.stop()
        await nc.drain()
        await ctl.stop()


@pytest.fixture
async def env(nats_server: NatsServer, cluster_name: str) -> AsyncIterator[tuple[Controller, FakeAgents, Any]]:
    async with controller_env(nats_server.url, cluster_name) as got:
        yield got


async def placed(call: Any, service: str) -> dict[str, int]:
    rows = (await call("get_containers", service=service)).data
    out: dict[str, int] = {}
    for r in rows:
        out[r["node"]] = out.get(r["node"], 0) + 1
    return out


async def _placed_is(call: Any, service: str, *wanted: dict[str, int]) -> bool:
    return await placed(call, service) in wanted


async def test_apply_places_spreads_and_reports(env: Any) -> None:
    _, agents, call = env
    for n in ("n1", "n2", "n3"):
        await agents.add(n)
    reply = await call("apply", manifests=[manifest(replicas=6)])
    assert reply.ok, reply
    assert reply.data["results"] == [{"kind": "service", "name": "web", "action": "created", "revision": 1}]
    await wait_for(lambda: _ready(call, "web", 6), 10, message="6 replicas ready")
    assert await placed(call, "web") == {"n1": 2, "n2": 2, "n3": 2}
    again = await call("apply", manifests=[manifest(replicas=6)])
    assert again.data["results"][0]["action"] == "unchanged"
    nodes = (await call("get_nodes")).data
    assert {n["name"]: n["allocated"]["cpu"] for n in nodes} == {"n1": 1.0, "n2": 1.0, "n3": 1.0}
    assert all(n["status"] == "ready" for n in nodes)


async def _ready(call: Any, name: str, n: int) -> bool:
    rows = (await call("get_services", name=name)).data
    return bool(rows) and rows[0]["ready"] == n and rows[0]["status"] == "available"


async def test_scale_and_delete(env: Any) -> None:
    _, agents, call = env
    await agents.add("n1")
    await agents.add("n2")
    assert (await call("apply", manifests=[manifest(replicas=2)])).ok
    await wait_for(lambda: _ready(call, "web", 2), 10)
    assert (await call("scale", name="web", replicas=4)).ok
    await wait_for(lambda: _ready(call, "web", 4), 10)
    assert (await call("scale", name="web", replicas=1)).ok
    await wait_for(lambda: _ready(call, "web", 1), 10)
    assert (await call("delete", names=["web"])).ok
    await wait_for(lambda: _placed_is(call, "web", {}), 10)
    missing = await call("delete", names=["web"])
    assert not missing.ok and missing.code == "not-found"


async def test_invalid_apply_changes_nothing(env: Any) -> None:
    _, agents, call = env
    await agents.add("n1")
    bad = manifest("bad", replicas=1, ports=[{"container": 70000}])
    reply = await call("apply", manifests=[manifest("good", replicas=1), bad])
    assert not reply.ok and reply.code == "invalid"
    assert any("spec.ports[0].container" in p["where"] for p in reply.problems)
    assert (await call("get_services")).data == []


async def test_lost_node_replicas_move(env: Any) -> None:
    _, agents, call = env
    for n in ("n1", "n2", "n3"):
        await agents.add(n)
    assert (await call("apply", manifests=[manifest(replicas=3)])).ok
    await wait_for(lambda: _ready(call, "web", 3), 10)
    agents.alive.discard("n2")
    await wait_for(lambda: _placed_is(call, "web", {"n1": 2, "n3": 1}, {"n1": 1, "n3": 2}),
                   10, message="replica of n2 rescheduled")
    await wait_for(lambda: _ready(call, "web", 3), 10)
    rows = (await call("get_containers", service="web")).data
    assert sum(r["restarts"] for r in rows) == 1  # the replacement counts as a restart of that replica
    nodes = {n["name"]: n["status"] for n in (await call("get_nodes")).data}
    assert nodes["n2"] == "lost"
    kinds = [e["kind"] for e in (await call("events", service="web")).data]
    assert "rescheduled" in kinds
    await wait_for(lambda: _has_event(call, "node-lost", "n2"), 5)
    agents.alive.add("n2")
    await wait_for(lambda: _has_event(call, "node-recovered", "n2"), 5)
    await wait_for(lambda: _ready(call, "web", 3), 10)
    assert sum((await placed(call, "web")).values()) == 3  # the returning node gets nothing back: no duplicates


async def _has_event(call: Any, kind: str, node: str) -> bool:
    return any(e["kind"] == kind and e["node"] == node for e in (await call("events")).data)


async def test_constraints_cordon_and_unschedulable(env: Any) -> None:
    _, agents, call = env
    await agents.add("a1", labels={"zone": "a"})
    await agents.add("b1", labels={"zone": "b"})
    m = manifest(replicas=2, placement={"constraints": ["node.labels.zone == a"]})
    assert (await call("apply", manifests=[m])).ok
    await wait_for(lambda: _ready(call, "web", 2), 10)
    assert await placed(call, "web") == {"a1": 2}
    assert (await call("cordon", node="a1")).data["status"] == "cordoned"
    assert (await call("scale", name="web", replicas=3)).ok
    await wait_for(lambda: _message(call, "web"), 10, message="unschedulable reported")
    assert await placed(call, "web") == {"a1": 2}
    assert (await call("uncordon", node="a1")).ok
    await wait_for(lambda: _ready(call, "web", 3), 10)


async def _message(call: Any, name: str) -> bool:
    rows = (await call("get_services", name=name)).data
    return "cannot be placed" in rows[0]["message"]


async def test_controller_restart_keeps_placement(env: Any, nats_server: NatsServer, cluster_name: str) -> None:
    ctl, agents, call = env
    for n in ("n1", "n2"):
        await agents.add(n)
    assert (await call("apply", manifests=[manifest(replicas=4)])).ok
    await wait_for(lambda: _ready(call, "web", 4), 10)
    before = sorted(r["id"] for r in (await call("get_containers", service="web")).data)
    await ctl.stop()
    ctl2 = Controller(ControllerConfig(nats_url=nats_server.url, cluster=cluster_name, node_grace=1.5))
    await ctl2.start()
    try:
        await wait_for(lambda: _ready(call, "web", 4), 10)
        after = sorted(r["id"] for r in (await call("get_containers", service="web")).data)
        assert after == before
    finally:
        await ctl2.stop()


async def test_a_restarted_controller_answers_reads_once_the_nodes_reported(
    env: Any, nats_server: NatsServer, cluster_name: str
) -> None:
    """Not from the registrations alone: before the first heartbeats every service looked "progressing" with
    no replica running (and chaos counted a converged cluster as unconverged)."""
    ctl, agents, call = env
    for n in ("n1", "n2"):
        await agents.add(n)
    assert (await call("apply", manifests=[manifest(replicas=4)])).ok
    await wait_for(lambda: _ready(call, "web", 4), 10)
    await ctl.stop()
    agents.alive.clear()  # no heartbeat while the new controller starts
    ctl2 = Controller(ControllerConfig(nats_url=nats_server.url, cluster=cluster_name, node_grace=1.5))
    await ctl2.start()
    try:
        read = asyncio.ensure_future(call("get_services", name="web"))
        agents.alive.update({"n1", "n2"})  # the read is on its way; the heartbeats resume
        [row] = (await read).data
        assert (row["status"], row["running"]) == ("available", 4)
    finally:
        await ctl2.stop()


FAST = {"max_surge": 1, "max_unavailable": 0, "min_ready": "0s", "progress_deadline": "30s"}


async def _status_is(call: Any, name: str, status: str, revision: int) -> bool:
    row = (await call("get_services", name=name)).data[0]
    containers = (await call("get_containers", service=name)).data
    return (row["status"] == status and row["revision"] == revision
            and all(c["revision"] == revision for c in containers) and len(containers) == row["replicas"])


async def test_rolling_update_then_auto_rollback_then_undo(env: Any) -> None:
    _, agents, call = env
    await agents.add("n1")
    await agents.add("n2")
    assert (await call("apply", manifests=[manifest(replicas=3, update=FAST)])).ok
    await wait_for(lambda: _status_is(call, "web", "available", 1), 10)
    v2 = manifest(replicas=3, update=FAST, env={"V": "2"})
    assert (await call("apply", manifests=[v2])).data["results"][0]["revision"] == 2
    await wait_for(lambda: _status_is(call, "web", "available", 2), 15, message="rolled to revision 2")

    agents.broken_images.add("local/busybox:broken")
    v3 = manifest(replicas=3, update=FAST, image="local/busybox:broken")
    assert (await call("apply", manifests=[v3])).data["results"][0]["revision"] == 3
    await wait_for(lambda: _status_is(call, "web", "rolled-back", 2), 15, message="rolled back to revision 2")
    history = (await call("rollout_history", name="web")).data
    assert [(h["revision"], h["result"]) for h in history] == [(1, "complete"), (2, "complete"), (3, "rolled-back")]
    assert "failing" in (await call("rollout_status", name="web")).data["reason"]

    # Undo (to the revision below the current 2: 1) stores the spec of 1 as revision 4, as kubectl does:
    # 1 leaves the history, and every replica runs revision 4 once it is rolled out.
    undo = await call("rollout_undo", name="web")
    assert undo.ok and undo.data["revision"] == 4
    await wait_for(lambda: _status_is(call, "web", "available", 4), 15, message="undo to the spec of 1 as 4")
    await wait_for(lambda: _newest_result(call, "complete"), 15, message="revision 4 complete in the history")
    history = (await call("rollout_history", name="web")).data
    assert (history[-1]["revision"], history[-1]["change"]) == (4, "undo to revision 1")
    assert [h["revision"] for h in history] == [2, 3, 4]
    containers = (await call("get_containers", service="web")).data
    assert {c["revision"] for c in containers} == {4}
    # A second undo goes to the previous revision, 3 (the broken spec) as 5: it fails and is rolled back to
    # the last good 4, which keeps its number; the history names each revision once.
    again = await call("rollout_undo", name="web")
    assert again.ok and again.data["revision"] == 5
    await wait_for(lambda: _status_is(call, "web", "rolled-back", 4), 15, message="5 rolled back to 4")
    history = (await call("rollout_history", name="web")).data
    assert [(h["revision"], h["change"], h["result"]) for h in history] == [
        (2, "env.V", "complete"), (4, "undo to revision 1", "complete"), (5, "undo to revision 3", "rolled-back")]
    unknown = await call("rollout_undo", name="web", to_revision=3)
    assert not unknown.ok and unknown.code == "not-found" and "no revision 3 (known: 2, 4, 5)" in unknown.error
    skipped = await call("rollout_undo", name="web", to_revision=4)
    assert skipped.ok and skipped.data == {"name": "web", "revision": 4, "skipped": True}
    third = await call("rollout_undo", name="web")  # from 4: the highest below it, 2, as 6
    assert third.ok and third.data["revision"] == 6
    await wait_for(lambda: _status_is(call, "web", "available", 6), 15, message="undo to the spec of 2 as 6")


async def _newest_result(call: Any, result: str) -> bool:
    return bool((await call("rollout_history", name="web")).data[-1]["result"] == result)


async def test_failed_rollout_without_auto_rollback_stops(env: Any) -> None:
    _, agents, call = env
    await agents.add("n1")
    upd = {**FAST, "auto_rollback": False}
    assert (await call("apply", manifests=[manifest(replicas=2, update=upd)])).ok
    await wait_for(lambda: _status_is(call, "web", "available", 1), 10)
    agents.broken_images.add("local/busybox:broken")
    assert (await call("apply", manifests=[manifest(replicas=2, update=upd, image="local/busybox:broken")])).ok
    await wait_for(lambda: _service_status(call, "web", "failed"), 15)
    revs = sorted(c["revision"] for c in (await call("get_containers", service="web")).data)
    assert revs == [1, 1, 2]  # the old revision keeps serving; the rollout stopped


async def _service_status(call: Any, name: str, status: str) -> bool:
    return bool((await call("get_services", name=name)).data[0]["status"] == status)


async def test_standby_controller_takes_over(env: Any, nats_server: NatsServer, cluster_name: str) -> None:
    ctl, agents, call = env
    await agents.add("n1")
    standby = Controller(ControllerConfig(nats_url=nats_server.url, cluster=cluster_name, node_grace=1.5,
                                          id="standby"))
    await standby.start()
    try:
        await wait_for(lambda: ctl.is_leader, 10, message="first controller leads")
        first = (await call("leader")).data
        assert first["id"] == ctl.id and not standby.is_leader
        assert (await call("apply", manifests=[manifest(replicas=2)])).ok
        await wait_for(lambda: _ready(call, "web", 2), 10)
        ctl.elector.resign = _no_resign  # type: ignore[union-attr,method-assign]  # die without resigning
        await ctl.stop()
        t0 = time.monotonic()
        await wait_for(lambda: standby.is_leader, 10, message="standby takes over")
        assert time.monotonic() - t0 < 5
        assert (await call("leader")).data["term"] == first["term"] + 1
        assert (await call("scale", name="web", replicas=3)).ok
        await wait_for(lambda: _ready(call, "web", 3), 10, message="new leader reconciles")
    finally:
        await standby.stop()


async def _no_resign() -> None:
    return None


async def test_second_apply_during_rollout_newest_wins(env: Any) -> None:
    _, agents, call = env
    await agents.add("n1", cpu=4.0)
    slow = {**FAST, "min_ready": "1s"}
    assert (await call("apply", manifests=[manifest(replicas=4, update=slow)])).ok
    await wait_for(lambda: _status_is(call, "web", "available", 1), 10)
    assert (await call("apply", manifests=[manifest(replicas=4, update=slow, env={"V": "2"})])).ok
    assert (await call("scale", name="web", replicas=3)).ok
    assert (await call("apply", manifests=[manifest(replicas=5, update=slow, env={"V": "3"})])).ok
    await wait_for(lambda: _status_is(call, "web", "available", 3), 30, message="newest spec wins")
    rows = (await call("get_containers", service="web")).data
    assert len(rows) == 5 and {r["revision"] for r in rows} == {3}


async def test_controller_survives_nats_restart(nats_server: NatsServer, cluster_name: str) -> None:
    """Losing NATS never stops the controller: once the server is back it answers and reconciles again."""
    ctl = Controller(ControllerConfig(nats_url=nats_server.url, cluster=cluster_name, node_grace=1.5))
    await ctl.start()
    try:
        await wait_for(lambda: ctl.is_leader, 10)
        await nats_server.astop()
        await nats_server.astart()
        nc = await bus.connect(nats_server.url, name="test")
        store = await bus.open_store(nc, cluster_name)
        agents = FakeAgents(nc, store, Names(cluster_name))

        async def call(verb: str, **body: Any) -> ApiReply:
            msg = await nc.request(Names(cluster_name).api(verb), wire.encode(body), timeout=5)
            return ApiReply.from_wire(msg.data)

        try:
            await agents.add("n1")
            await wait_for(lambda: _call_ok(call), 20, message="controller answers after the restart")
            assert (await call("apply", manifests=[manifest(replicas=2)])).ok
            await wait_for(lambda: _ready(call, "web", 2), 20, message="controller reconciles after the restart")
        finally:
            agents.stop()
            await nc.drain()
    finally:
        await ctl.stop()


async def _call_ok(call: Any) -> bool:
    try:
        return bool((await call("get_nodes")).ok)
    except Exception:
        return False


async def test_reapply_after_delete_starts_over(env: Any) -> None:
    _, agents, call = env
    await agents.add("n1")
    assert (await call("apply", manifests=[manifest(replicas=1)])).ok
    await wait_for(lambda: _ready(call, "web", 1), 10)
    assert (await call("delete", names=["web"])).ok
    await wait_for(lambda: _placed_is(call, "web", {}), 10)
    again = await call("apply", manifests=[manifest(replicas=2)])
    assert again.ok and again.data["results"][0] == {"kind": "service", "name": "web", "action": "created",
                                                     "revision": 1}
    await wait_for(lambda: _ready(call, "web", 2), 10)
