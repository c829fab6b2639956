"""The sim and process drivers behind a real agent and a real nats-server (no Docker needed)."""

from __future__ import annotations

import contextlib
from typing import Any, cast

import pytest

from drover.agent.config import AgentConfig
from drover.agent.drivers.sim import SimDriver
from drover.agent.main import Agent
from drover.shared import wire
from tests.fixtures import wait_for
from tests.fixtures.nats import NatsServer
from tests.integration.agent_support import replica, running, running_agent, tap

pytestmark = [pytest.mark.nats]


async def test_many_sim_agents_in_one_process(nats_server: NatsServer, cluster_name: str) -> None:
    nodes = [f"s{i}" for i in range(20)]
    async with tap(nats_server.url, cluster_name) as t, contextlib.AsyncExitStack() as stack:
        agents: dict[str, Agent] = {}
        for n in nodes:
            agents[n] = await stack.enter_async_context(
                running_agent(nats_server.url, cluster_name, n, driver="sim", cpu=2.0, memory=2**30)
            )
        for n in nodes:
            await t.assign(n, [replica(f"{n}-a"), replica(f"{n}-b"), replica(f"{n}-c")])
        await wait_for(
            lambda: all(running(t.statuses(n), [f"{n}-a", f"{n}-b", f"{n}-c"]) for n in nodes),
            20,
            message="all hollow containers running",
        )
        regs = {n: await t.store.nodes.get(n) for n in nodes}
        assert all(r.value for r in regs.values())
        sim = cast(SimDriver, agents["s3"].driver)
        cid = t.statuses("s3")["s3-a"].container_id
        sim.crash(cid, 1)
        await wait_for(lambda: t.statuses("s3")["s3-a"].restarts == 1, 10, message="restarted in place")
        assert t.statuses("s3")["s3-a"].container_id == cid
        await t.assign("s3", [replica("s3-b")])
        await wait_for(lambda: set(t.statuses("s3")) == {"s3-b"}, 10)

        async def one_left() -> bool:  # removals run in the replicas' workers, after the status changed
            return len(await sim.list()) == 1

        await wait_for(one_left, 10, message="s3-a and s3-c removed")


async def test_process_driver(nats_server: NatsServer, cluster_name: str) -> None:
    cmd = ["sh", "-c", "echo hello-proc $GREETING; exec sleep 30"]
    async with tap(nats_server.url, cluster_name) as t:
        agent = Agent(
            AgentConfig(
                nats_url=nats_server.url, node="p1", cluster=cluster_name, driver="process", heartbeat_interval=0.2
            )
        )
        await agent.start()
        try:
            await t.assign(
                "p1",
                [
                    replica("q1", service="sleeper", command=cmd, ports=[]),
                    replica("q2", service="failer", command=["sh", "-c", "exit 2"], restart="on-failure", ports=[]),
                ],
            )
            await wait_for(lambda: (s := t.statuses("p1").get("q1")) and s.state == "running" and s.ready, 10)
            await wait_for(lambda: (s := t.statuses("p1").get("q2")) and s.restarts >= 2, 10, message="q2 restarts")

            async def logs() -> dict[str, Any] | None:
                body = {"container": "q1", "tail": 10, "follow": False}
                msg = await t.nc.request(t.names.agent_api("p1", "logs"), wire.encode(body), timeout=5)
                reply = wire.decode(msg.data)
                return reply if reply.get("lines") == ["hello-proc hi"] else None

            await wait_for(logs, 10, message="process logs")
            await t.assign("p1", [])
            await wait_for(lambda: not t.statuses("p1"), 10)
            assert await agent.driver.list() == []
        finally:
            await agent.stop()


async def test_run_agent_runs_until_cancelled(nats_server: NatsServer, cluster_name: str) -> None:
    import asyncio

    from drover.agent.main import run_agent

    cfg = AgentConfig(nats_url=nats_server.url, node="r1", cluster=cluster_name, driver="sim", heartbeat_interval=0.1)
    async with tap(nats_server.url, cluster_name) as t:
        await t.assign("r1", [replica("z1")])
        task = asyncio.create_task(run_agent(cfg))
        await wait_for(lambda: running(t.statuses("r1"), ["z1"]), 10, message="agent up")
        reg = await t.store.nodes.get("r1")
        assert reg.value is not None
        task.cancel()
        await wait_for(task.done, 10, message="run_agent returned after cancel")
        assert task.exception() is None if not task.cancelled() else True


async def test_process_driver_gives_each_replica_its_own_port(nats_server: NatsServer, cluster_name: str) -> None:
    import asyncio
    import sys

    # Two replicas of one service on one node: each listens on its own DROVER_PORT_HTTP and both get ready.
    cmd = ["sh", "-c", f"exec {sys.executable} -m http.server $DROVER_PORT_HTTP --bind 127.0.0.1"]
    health = {"http": {"path": "/", "port": 8080}, "interval": 0.5, "timeout": 1.0, "failure_threshold": 3,
              "initial_delay": 0.0}
    async with tap(nats_server.url, cluster_name) as t:
        agent = Agent(
            AgentConfig(
                nats_url=nats_server.url, node="p2", cluster=cluster_name, driver="process", heartbeat_interval=0.2
            )
        )
        await agent.start()
        try:
            web = [replica(r, service="pweb", command=cmd, health=health) for r in ("w1", "w2")]
            await t.assign("p2", web)
            await wait_for(
                lambda: all((s := t.statuses("p2").get(r)) and s.ready for r in ("w1", "w2")), 30,
                message="both replicas ready",
            )
            ports = {r: t.statuses("p2")[r].ports["http"] for r in ("w1", "w2")}
            assert ports["w1"] != ports["w2"] and 8080 not in ports.values()
            assert {t.statuses("p2")[r].host_port for r in ("w1", "w2")} == set(ports.values())
            for port in ports.values():
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET / HTTP/1.0\r\n\r\n")
                assert (await reader.readline()).startswith(b"HTTP/1.0 200")
                writer.close()
        finally:
            await agent.stop()
