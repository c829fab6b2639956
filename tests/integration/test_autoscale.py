"""Autoscaling end to end on the real engine: a controller and an agent in this process, busybox containers.

A busy loop using all of its 0.1 cpu (100 % of the request, target 50 %) scales up to its max; an idle service
scales down to its min once the scale-down window has passed; ``scale`` turns autoscaling off; the proxy's
connection rate reaches the controller and scales a service on ``rps_per_replica``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiodocker
import pytest

from drover.agent.main import Agent
from drover.controller.config import ControllerConfig
from drover.controller.main import Controller
from drover.shared import bus, wire
from drover.shared.models import ApiReply, Event
from drover.shared.subjects import Names
from tests.fixtures import free_tcp_port, ticks, wait_for
from tests.fixtures.nats import NatsServer
from tests.integration.agent_support import http_get, running_agent

BUSY = ["sh", "-c", "while :; do :; done"]
IDLE = ["sleep", "3600"]


def manifest(name: str, command: list[str], replicas: int, autoscale: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "drover/v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"image": "local/busybox:latest", "command": command, "replicas": replicas,
                 "resources": {"cpu": 0.1, "memory": "32Mi"}, "stop_grace": "1s", "autoscale": autoscale, **spec},
    }


Call = Any


@pytest.fixture
async def cluster(
    nats_server: NatsServer, docker_client: aiodocker.Docker, docker_cleanup: str, busybox_image: str
) -> AsyncIterator[tuple[Controller, Agent, Call]]:
    name = docker_cleanup
    ctl = Controller(ControllerConfig(nats_url=nats_server.url, cluster=name, node_grace=3.0))
    ctl.autoscaler.interval = 0.5
    await ctl.start()
    nc = await bus.connect(nats_server.url, name="test")

    async def call(verb: str, **body: Any) -> ApiReply:
        msg = await nc.request(Names(name).api(verb), wire.encode(body), timeout=10)
        return ApiReply.from_wire(msg.data)

    try:
        await wait_for(lambda: ctl.is_leader, timeout=10, message="controller never led")
        async with running_agent(nats_server.url, name, "n1", cpu=8.0) as agent:
            yield ctl, agent, call
            with contextlib.suppress(Exception):
                await call("delete", names=list(ctl.state.services))
    finally:
        await nc.drain()
        await ctl.stop()


def replicas(ctl: Controller, service: str) -> int:
    return ctl.state.services[service].value.replicas


async def scaled_events(call: Call) -> list[Event]:
    """The ``scaled`` events as a user reads them: an events reply holds every event stored before it (the
    controller's own copy of the stream may be a moment behind)."""
    rows = (await call("events", limit=0)).data
    return [Event(**{**r, "time": 0.0}) for r in rows if r["kind"] == "scaled"]


def running(agent: Agent, service: str) -> int:
    return sum(1 for s in agent.statuses if s.service == service and s.state == "running")


async def test_cpu_scales_up_and_down_and_scale_turns_it_off(cluster: tuple[Controller, Agent, Call]) -> None:
    ctl, agent, call = cluster
    busy = {"min": 1, "max": 3, "cpu_percent": 50, "scale_up_window": "0s", "scale_down_window": "5s"}
    idle = {"min": 1, "max": 3, "cpu_percent": 50, "scale_up_window": "0s", "scale_down_window": "5s"}
    reply = await call("apply", manifests=[manifest("busy", BUSY, 1, busy), manifest("idle", IDLE, 3, idle)])
    assert reply.ok, reply

    # The agent measures: the busy replica uses its whole request, the idle ones next to nothing.
    def measured() -> bool:
        hb = agent.heartbeat()
        cpu = {c.service: c.cpu_percent for c in hb.containers if c.cpu_percent is not None}
        return cpu.get("busy", 0) > 60 and cpu.get("idle", 100) < 20 and all(
            c.memory_percent is not None and 0 < c.memory_percent < 100 for c in hb.containers
        )

    await wait_for(measured, timeout=20, interval=0.2, message="no cpu/memory measurements")

    await wait_for(lambda: replicas(ctl, "busy") == 3 and replicas(ctl, "idle") == 1, timeout=40, interval=0.2,
                   message="busy did not scale up to 3 / idle not down to 1")
    await wait_for(lambda: running(agent, "busy") == 3 and running(agent, "idle") == 1, timeout=20)
    scaled = await scaled_events(call)
    assert any(e.service == "busy" and "cpu" in e.message and "of 50% target" in e.message for e in scaled), scaled
    # Down in one step or several (a recommendation made while the replicas were starting stays in the 5 s
    # stabilisation window, as with Kubernetes' HPA), never up, and ending at 1.
    idle_steps = [e.message.split(":")[0] for e in scaled if e.service == "idle"]
    assert idle_steps and idle_steps[-1].endswith(" to 1"), scaled
    assert all(int(m.split()[2]) > int(m.split()[4]) for m in idle_steps), scaled

    described = (await call("describe_service", name="busy")).data["autoscale"]
    assert described["enabled"] is True and described["policy"]["max"] == 3
    assert described["reason"].startswith("cpu ") and described["last_scaled"] is not None

    # `scale` turns autoscaling off: the busy service stays at what was asked, although its cpu is high.
    assert (await call("scale", name="busy", replicas=1)).ok
    rounds = ctl.autoscaler.rounds
    await wait_for(lambda: ctl.autoscaler.rounds >= rounds + 4 and running(agent, "busy") == 1, timeout=20)
    assert replicas(ctl, "busy") == 1
    described = (await call("describe_service", name="busy")).data["autoscale"]
    assert described["enabled"] is False and "drover scale" in described["disabled_reason"]
    # The next apply turns it on again.
    assert (await call("apply", manifests=[manifest("busy", BUSY, 1, busy)])).ok
    await wait_for(lambda: replicas(ctl, "busy") == 3, timeout=30, interval=0.2)


async def test_request_rate_scales_up(cluster: tuple[Controller, Agent, Call]) -> None:
    ctl, agent, call = cluster
    port = free_tcp_port()
    policy = {"min": 1, "max": 3, "cpu_percent": None, "rps_per_replica": 5, "scale_down_window": "30s"}
    web = manifest("web", ["httpd", "-f", "-p", "8080"], 1, policy,
                   ports=[{"name": "http", "container": 8080, "expose": port}],
                   health={"tcp": {"port": 8080}, "interval": "500ms"})
    assert (await call("apply", manifests=[web])).ok
    await wait_for(lambda: any(s.service == "web" and s.ready for s in agent.statuses), timeout=20)

    async def load() -> None:
        # Each request is followed by a turn of the loop: a refused connection can fail without suspending, and
        # a loop that never yields starves the agent under test (and its own cancellation) for good.
        async for _ in ticks(0):
            await http_get("127.0.0.1", port, timeout=1.0)

    task = asyncio.get_running_loop().create_task(load())
    try:
        await wait_for(lambda: agent.heartbeat().service_rps.get("web", 0) > 10, timeout=20, interval=0.2,
                       message="no request rate measured through the proxy")
        await wait_for(lambda: ctl.state.service_rps.get("n1", {}).get("web", 0) > 10, timeout=10)
        await wait_for(lambda: replicas(ctl, "web") == 3, timeout=20, interval=0.2, message="web did not scale up")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert any(e.service == "web" and "rps " in e.message for e in await scaled_events(call))
