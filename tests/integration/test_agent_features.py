"""Agent features beyond the core loop: probes of every kind, host networking, the logs API, metrics,
missing images, term fencing, removal on stop. Real nats-server and real Docker."""

from __future__ import annotations

import json
from typing import Any

import aiodocker
import pytest

from drover.agent import logs_api
from drover.agent.drivers.dockerview import L_CLUSTER
from drover.shared import wire
from tests.fixtures import free_tcp_port, wait_for
from tests.fixtures.nats import NatsServer
from tests.integration.agent_support import http_get, replica, running, running_agent, tap

pytestmark = [pytest.mark.docker, pytest.mark.nats]


def _health(**kind: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"http": None, "tcp": None, "exec": None, "interval": 0.2, "timeout": 0.5}
    base.update({"failure_threshold": 2, "initial_delay": 0.0}, **kind)
    return base


async def _count(docker: aiodocker.Docker, cluster: str) -> int:
    rows = await docker.containers.list(all=True, filters=json.dumps({"label": [f"{L_CLUSTER}={cluster}"]}))
    return len(rows)


async def test_tcp_exec_probes_and_host_network(
    nats_server: NatsServer, docker_client: aiodocker.Docker, docker_cleanup: str, busybox_image: str
) -> None:
    cluster = docker_cleanup
    port = free_tcp_port()
    host_cmd = ["httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"]
    async with tap(nats_server.url, cluster) as t, running_agent(nats_server.url, cluster, "n1"):
        await t.assign(
            "n1",
            [
                replica("t1", service="tcp", health=_health(tcp={"port": 8080})),
                replica("t2", service="tcpbad", health=_health(tcp={"port": 8081}),
                        ports=[{"name": "http", "container": 8080, "expose": None}, {"container": 8081}]),
                replica("x1", service="exec", health=_health(exec={"command": ["test", "-f", "/www/index.html"]})),
                replica(
                    "h1",
                    service="host",
                    network="host",
                    command=host_cmd,
                    ports=[{"name": "http", "container": port, "expose": None}],
                    health=_health(http={"path": "/index.html", "port": port}),
                ),
            ],
        )
        ready = ["t1", "x1", "h1"]
        await wait_for(lambda: all((s := t.statuses("n1").get(i)) and s.ready for i in ready), 15, message="ready")
        h1 = t.statuses("n1")["h1"]
        assert h1.host_port == port and h1.ports == {"http": port}
        code, body = await http_get("127.0.0.1", port)
        assert code == 200 and "hello from drover" in body
        # Nothing listens on 8081 inside: docker-proxy accepts and resets, so the tcp probe fails.
        await wait_for(lambda: (s := t.statuses("n1").get("t2")) and s.restarts >= 1, 15, message="t2 restarted")
        assert not t.statuses("n1")["t2"].ready
        assert all(t.statuses("n1")[i].restarts == 0 for i in ready)


async def test_logs_api_tail_and_follow(
    nats_server: NatsServer,
    docker_client: aiodocker.Docker,
    docker_cleanup: str,
    busybox_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logs_api, "ALIVE_TIMEOUT", 1.0)
    cluster = docker_cleanup
    cmd = ["sh", "-c", "echo first; echo second; echo third; while true; do echo tick; sleep 0.1; done"]
    async with tap(nats_server.url, cluster) as t, running_agent(nats_server.url, cluster, "n1"):
        await t.assign("n1", [replica("l1", service="talk", command=cmd)])
        await wait_for(lambda: running(t.statuses("n1"), ["l1"]), 15)
        subject = t.names.agent_api("n1", "logs")

        async def ask(body: dict[str, Any]) -> dict[str, Any]:
            msg = await t.nc.request(subject, wire.encode(body), timeout=5)
            return wire.decode(msg.data)

        reply = await wait_for(
            lambda: _has_tick(ask({"container": "l1", "tail": None, "follow": False})), 10, message="logs"
        )
        assert reply["lines"][:3] == ["first", "second", "third"]
        tail = await ask({"container": "drover-talk-l1", "tail": 2, "follow": False})
        assert tail["ok"] and len(tail["lines"]) == 2
        missing = await ask({"container": "nope", "tail": 2, "follow": False})
        assert not missing["ok"] and "nope" in missing["error"]
        # Logs go only to the requester's inbox, never onto another subject (e.g. a node's heartbeats).
        forged = await ask({"container": "l1", "tail": 1, "follow": True, "stream": t.names.heartbeat("n2")})
        assert not forged["ok"] and "_INBOX." in forged["error"]

        stream = t.nc.new_inbox()
        got: list[dict[str, Any]] = []

        async def on_stream(msg: Any) -> None:
            got.append(wire.decode(msg.data))

        await t.nc.subscribe(stream, cb=on_stream)
        reply = await ask({"container": "l1", "tail": 1, "follow": True, "stream": stream})
        assert reply["ok"] and len(reply["lines"]) == 1
        await wait_for(lambda: sum(len(m.get("lines", [])) for m in got) >= 3, 10, message="streamed lines")
        assert all(line == "tick" for m in got for line in m.get("lines", []))
        for _ in range(3):  # keep it alive a little, then stop: the agent ends the stream with eof
            await t.nc.publish(f"{stream}.alive", wire.encode({"alive": True}))
            n = len(got)
            await wait_for(lambda n=n: len(got) > n, 5, message="more lines")  # type: ignore[misc]
        await wait_for(lambda: any(m.get("eof") for m in got), 10, message="eof")


async def _has_tick(coro: Any) -> dict[str, Any] | None:
    reply: dict[str, Any] = await coro
    return reply if reply.get("ok") and "tick" in reply.get("lines", []) else None


async def test_metrics_image_missing_and_fencing(
    nats_server: NatsServer, docker_client: aiodocker.Docker, docker_cleanup: str, busybox_image: str
) -> None:
    cluster = docker_cleanup
    async with (
        tap(nats_server.url, cluster) as t,
        running_agent(nats_server.url, cluster, "n1", metrics_port=0, pull_images=False) as agent,
    ):
        await t.assign("n1", [replica("m1"), replica("m2", image="local/does-not-exist:latest")], term=5)
        await wait_for(lambda: running(t.statuses("n1"), ["m1"]), 15)
        st = await wait_for(lambda: (s := t.statuses("n1").get("m2")) and s.message and s, 10)
        assert st.state == "pending"
        assert st.message.startswith("image local/does-not-exist:latest ")  # not found / not on this node
        await wait_for(lambda: t.events_of("image-missing"), 5)
        assert agent.metrics_port
        code, body = await http_get("127.0.0.1", agent.metrics_port, "/metrics")
        assert code == 200
        assert 'drover_agent_actions_total{kind="create",node="n1"}' in body
        assert 'drover_agent_containers{node="n1",state="running"} 1.0' in body

        # An assignment from an older term is ignored; the current term's is applied.
        await t.assign("n1", [], term=4)
        seen = t.hb_count["n1"]
        await wait_for(lambda: t.hb_count["n1"] >= seen + 5, 10)
        assert running(t.statuses("n1"), ["m1"])
        await t.assign("n1", [], term=5)
        await wait_for(lambda: not t.statuses("n1"), 10)
        await wait_for(lambda: _zero(docker_client, cluster), 10)


async def _zero(docker: aiodocker.Docker, cluster: str) -> bool:
    return await _count(docker, cluster) == 0


async def test_stop_with_remove_containers(
    nats_server: NatsServer, docker_client: aiodocker.Docker, docker_cleanup: str, busybox_image: str
) -> None:
    cluster = docker_cleanup
    async with tap(nats_server.url, cluster) as t:
        async with running_agent(nats_server.url, cluster, "n1") as agent:
            await t.assign("n1", [replica("r1"), replica("r2")])
            await wait_for(lambda: running(t.statuses("n1"), ["r1", "r2"]), 15)
            assert await _count(docker_client, cluster) == 2
            await agent.stop(remove_containers=True)
            assert await _count(docker_client, cluster) == 0
