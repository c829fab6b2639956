"""Discovery inside the agent: gossip between two Docker agents (127.0.0.1 and 127.0.0.2 of one cluster),
the per-node proxy on the services' expose ports, routing with NATS down, withdrawal before stop, the
endpoints API, the DROVER_SERVICE_ env and the cluster key. Everything talks to 127.0.0.0/8 only."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiodocker
import pytest

from drover.agent.config import AgentConfig
from drover.agent.discovery import (
    env_name,
    exposed_ports,
    local_endpoints,
    proxy_strategy,
    seeds_from_records,
    service_env,
    services_from_records,
)
from drover.agent.gossip import Endpoint
from drover.agent.main import Agent
from drover.agent.membership import AssignmentFeed
from drover.agent.proxy import LEAST_CONNECTIONS, ROUND_ROBIN
from drover.shared import bus, wire
from drover.shared.cluster_key import KEY_NAME, cluster_key, decode_key
from drover.shared.models import (
    AssignedContainer,
    ContainerState,
    ContainerStatus,
    NodeRegistration,
    ServiceRecord,
    spec_of,
)
from tests.fixtures import free_tcp_port, wait_for
from tests.fixtures.nats import NatsServer
from tests.integration.agent_support import Tap, http_get, running_agent, spec, tap

pytestmark = [pytest.mark.docker, pytest.mark.nats]

WHO = ["sh", "-c", "hostname > /www/who; exec httpd -f -p 8080 -h /www"]


def web_spec(expose: int, **over: Any) -> dict[str, Any]:
    return spec(command=WHO, ports=[{"name": "http", "container": 8080, "expose": expose}], **over)


def web(rid: str, expose: int, **over: Any) -> AssignedContainer:
    return AssignedContainer(id=rid, service="web", revision=1, spec=web_spec(expose, **over))


async def put_service(t: Tap, expose: int, **over: Any) -> None:
    rec = ServiceRecord(name="web", spec=web_spec(expose, **over), revision=1, replicas=2)
    await t.store.services.put("web", rec.to_wire())


def expose_port() -> int:
    """A port free on both agent addresses a moment ago (never a fixed one)."""
    for _ in range(20):
        port = free_tcp_port("127.0.0.1")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            with contextlib.suppress(OSError):
                s.bind(("127.0.0.2", port))
                return port
    raise AssertionError("no port free on both 127.0.0.1 and 127.0.0.2")


def table(agent: Agent, service: str = "web") -> dict[str, Endpoint]:
    assert agent.discovery is not None
    return {ep.container: ep for ep in agent.discovery.endpoints(service)}


def status_of(agent: Agent, rid: str) -> ContainerStatus | None:
    return next((s for s in agent.statuses if s.id == rid), None)


async def who(host: str, port: int) -> str:
    code, body = await http_get(host, port, "/who")
    assert code == 200, (code, body)
    return body.strip()


@contextlib.asynccontextmanager
async def two_agents(url: str, cluster: str, **kw: Any) -> AsyncIterator[tuple[Agent, Agent]]:
    async with (
        running_agent(url, cluster, "na", address="127.0.0.1", **kw) as a,
        running_agent(url, cluster, "nb", address="127.0.0.2", **kw) as b,
    ):
        yield a, b


# --- the whole path ------------------------------------------------------------------------------------


async def test_gossip_proxy_env_api_and_routing_without_nats(
    nats_server: NatsServer, docker_client: aiodocker.Docker, docker_cleanup: str, busybox_image: str
) -> None:
    cluster = docker_cleanup
    expose = expose_port()
    async with tap(nats_server.url, cluster) as t:
        await put_service(t, expose, restart="never")
        async with two_agents(nats_server.url, cluster) as (a, b):
            assert a.discovery is not None and b.discovery is not None
            # Both registered their gossip port and see each other.
            reg = NodeRegistration.from_wire((await t.store.nodes.get("nb")).value or b"")
            assert reg.gossip_port == b.gossip_port > 0 and reg.address == "127.0.0.2"
            await wait_for(
                lambda: {m.name for m in b.discovery.gossip.members()} == {"na", "nb"},  # type: ignore[union-attr]
                10,
                message="gossip membership",
            )
            # Both proxies listen on the service's expose port, each on its own address.
            await wait_for(lambda: b.discovery.proxy.services() == {"web": expose}, 10, message="B proxy")  # type: ignore[union-attr]
            await wait_for(lambda: a.discovery.proxy.services() == {"web": expose}, 10, message="A proxy")  # type: ignore[union-attr]

            # Endpoints that appear on A show in B's table.
            await t.assign("na", [web("a1", expose, restart="never"), web("a2", expose, restart="never")])
            await wait_for(lambda: set(table(b)) == {"a1", "a2"}, 20, message="A's endpoints in B's table")
            for rid in ("a1", "a2"):
                st = status_of(a, rid)
                assert st is not None
                ep = table(b)[rid]
                assert (ep.address, ep.port, ep.node, ep.revision, ep.ready) == (
                    "127.0.0.1",
                    st.host_port,
                    "na",
                    1,
                    True,
                )

            # HTTP through B's proxy (127.0.0.2) reaches A's containers, spread over both replicas.
            for rid in ("a1", "a2"):  # both httpds up (so no retry moves the round-robin cursor below)
                port = table(b)[rid].port
                await wait_for(lambda p=port: who("127.0.0.1", p), 15, message=f"{rid} answers directly")
            await wait_for(lambda: who("127.0.0.2", expose), 15, message="B's proxy answers")
            seen = [await who("127.0.0.2", expose) for _ in range(6)]
            assert set(seen) == {"drover-web-a1", "drover-web-a2"}, seen
            assert all(seen[i] != seen[i + 1] for i in range(5)), f"round-robin alternates: {seen}"

            # Endpoints API (any agent answers, queue group "agents"), with and without a filter.
            msg = await t.nc.request(t.names.endpoints, wire.encode({"service": "web"}), timeout=5)
            reply = wire.decode(msg.data)
            assert reply["ok"] is True
            rows = sorted(reply["endpoints"], key=lambda r: r["container"])
            assert [r["container"] for r in rows] == ["a1", "a2"]
            assert set(rows[0]) >= {"service", "address", "port", "node", "container", "ready", "revision"}
            assert rows[0]["service"] == "web" and rows[0]["node"] == "na" and rows[0]["ready"] is True
            msg = await t.nc.request(t.names.endpoints, wire.encode({"service": "nope"}), timeout=5)
            assert wire.decode(msg.data) == {"ok": True, "endpoints": []}
            msg = await t.nc.request(t.names.endpoints, b"", timeout=5)
            assert len(wire.decode(msg.data)["endpoints"]) == 2

            # Containers got the DROVER_SERVICE_ env of the services known when they started.
            a1_id = status_of(a, "a1").container_id  # type: ignore[union-attr]
            info = await docker_client.containers.container(a1_id).show()
            assert f"DROVER_SERVICE_WEB_ADDR=127.0.0.1:{expose}" in info["Config"]["Env"]
            assert "GREETING=hi" in info["Config"]["Env"]

            # NATS down: the proxy keeps routing from the gossip table; a container killed meanwhile
            # leaves the table and new connections avoid it.
            nats_server.stop()
            await wait_for(lambda: not a.nc.is_connected and not b.nc.is_connected, 10, message="NATS gone")  # type: ignore[union-attr]
            assert {await who("127.0.0.2", expose) for _ in range(4)} == {"drover-web-a1", "drover-web-a2"}
            await docker_client.containers.container(a1_id).kill()
            await wait_for(lambda: set(table(b)) == {"a2"}, 10, message="killed a1 left B's table")
            assert set(table(a)) == {"a2"}
            answers = [await who("127.0.0.2", expose) for _ in range(8)]
            answers += [await who("127.0.0.1", expose) for _ in range(4)]
            assert set(answers) == {"drover-web-a2"}, answers
            assert b.discovery.proxy.services() == {"web": expose}  # type: ignore[union-attr]

            # NATS back: the agents reconnect and the endpoints API answers from the same table.
            nats_server.start()

            async def api_sees_a2() -> bool:
                msg = await t.nc.request(t.names.endpoints, wire.encode({"service": "web"}), timeout=1)
                return [r["container"] for r in wire.decode(msg.data)["endpoints"]] == ["a2"]

            await wait_for(api_sees_a2, 20, message="endpoints API after NATS came back", ignore=(Exception,))


async def test_endpoint_withdrawn_before_its_container_stops(
    nats_server: NatsServer, docker_client: aiodocker.Docker, docker_cleanup: str, busybox_image: str
) -> None:
    cluster = docker_cleanup
    expose = expose_port()
    async with tap(nats_server.url, cluster) as t:
        await put_service(t, expose)
        async with two_agents(nats_server.url, cluster, proxy_strategy="least-conn") as (a, b):
            assert b.discovery is not None and b.discovery.strategy == LEAST_CONNECTIONS
            await t.assign("na", [web("a1", expose), web("a2", expose)])
            await t.assign("nb", [web("b1", expose)])
            await wait_for(lambda: set(table(b)) == {"a1", "a2", "b1"}, 20, message="3 endpoints in B's table")
            await wait_for(lambda: set(table(a)) == {"a1", "a2", "b1"}, 10, message="3 endpoints in A's table")
            await wait_for(lambda: who("127.0.0.2", expose), 15, message="B's proxy answers")

            # When A stops a1 (removed from its assignment), B's table must not hold a1 any more.
            in_table_at_stop: list[bool] = []
            orig_stop = a.driver.stop

            async def stop(container_id: str, grace: float) -> None:
                in_table_at_stop.append("a1" in table(b))
                await orig_stop(container_id, grace)

            a.driver.stop = stop  # type: ignore[method-assign]
            await t.assign("na", [web("a2", expose)])
            await wait_for(lambda: in_table_at_stop, 15, message="a1 stopped")
            assert in_table_at_stop == [False]
            assert set(table(b)) == {"a2", "b1"}
            answers = {await who("127.0.0.2", expose) for _ in range(6)}
            assert answers == {"drover-web-a2", "drover-web-b1"}


async def test_restarted_agent_is_ready_only_when_its_proxy_can_route(
    nats_server: NatsServer, docker_client: aiodocker.Docker, docker_cleanup: str, busybox_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An agent that comes back (killed, restarted) registers only once its gossip has heard a peer: when its
    start returns, its proxy already knows the peer's endpoints and a request through it is served at once."""
    cluster = docker_cleanup
    expose = expose_port()
    async with tap(nats_server.url, cluster) as t:
        await put_service(t, expose)
        async with running_agent(nats_server.url, cluster, "na", address="127.0.0.1") as a:
            await t.assign("na", [web("a1", expose)])
            await wait_for(lambda: set(table(a)) == {"a1"}, 20, message="a1 ready in A's table")
            async with running_agent(nats_server.url, cluster, "nb", address="127.0.0.2") as b:
                await wait_for(lambda: set(table(b)) == {"a1"}, 20, message="a1 in B's table")
            # B again, as after a restart: a fresh process that knows A from the nodes bucket only. What its
            # proxy could route to is read the moment it registers (from then on it is reported ready).
            b2 = Agent(AgentConfig(nats_url=nats_server.url, node="nb", cluster=cluster, address="127.0.0.2",
                                   heartbeat_interval=0.2))
            at_register: list[set[str]] = []
            register = AssignmentFeed.register

            async def registering(feed: AssignmentFeed) -> None:
                at_register.append(set(table(b2)))
                await register(feed)

            monkeypatch.setattr(AssignmentFeed, "register", registering)
            await asyncio.wait_for(b2.start(), 30)
            try:
                assert at_register == [{"a1"}], "B registered before its gossip knew any peer's endpoint"
                assert await who("127.0.0.2", expose) == "drover-web-a1"
            finally:
                await b2.stop()


async def test_agents_share_one_cluster_key(nats_server: NatsServer, cluster_name: str) -> None:
    nc = await bus.connect(nats_server.url, name="test-key")
    try:
        store = await bus.open_store(nc, cluster_name)
        k1, k2 = await cluster_key(store), await cluster_key(store)
        assert k1 == k2 and len(k1) == 32
        assert decode_key((await store.config.get(KEY_NAME)).value or b"") == k1
        async with running_agent(nats_server.url, cluster_name, "s1", driver="sim", metrics_port=0) as agent:
            assert agent.discovery is not None and agent.discovery.gossip is not None
            assert agent.discovery.gossip.key == k1
            # Gossip and proxy counters are in the agent's metrics.
            assert agent.metrics_port is not None
            code, body = await http_get("127.0.0.1", agent.metrics_port, "/metrics")
            assert code == 200
            assert 'drover_agent_gossip_events_total{kind="packets_out",node="s1"}' in body
            assert 'drover_agent_gossip_members{node="s1",status="alive"} 1.0' in body
        # --gossip-key overrides the stored key.
        async with running_agent(nats_server.url, cluster_name, "s2", driver="sim", gossip_key=b"x" * 32) as agent:
            assert agent.discovery is not None and agent.discovery.gossip is not None
            assert agent.discovery.gossip.key == b"x" * 32
    finally:
        await nc.close()


# --- pure helpers -------------------------------------------------------------------------------------


def test_exposed_ports_env_and_strategy() -> None:
    s = {
        "image": "i",
        "ports": [
            {"name": "http", "container": 80, "expose": 18080},
            {"name": "admin", "container": 81, "expose": 18081},
        ],
    }
    assert exposed_ports("my-api", spec_of(s)) == {"my-api": 18080, "my-api:admin": 18081}
    unexposed = spec_of({"image": "i", "ports": [{"name": "http", "container": 80, "expose": None}]})
    assert exposed_ports("x", unexposed) == {}
    assert env_name("my-api") == "DROVER_SERVICE_MY_API_ADDR"
    assert env_name("my-api:admin") == "DROVER_SERVICE_MY_API_ADMIN_ADDR"
    assert service_env({"web": 18080}, "127.0.0.2") == {"DROVER_SERVICE_WEB_ADDR": "127.0.0.2:18080"}
    assert proxy_strategy("least-conn") == LEAST_CONNECTIONS and proxy_strategy("round-robin") == ROUND_ROBIN
    with pytest.raises(ValueError):
        proxy_strategy("random")
    live = ServiceRecord(name="web", spec=s).to_wire()
    gone = ServiceRecord(name="old", spec=s, deleted=True).to_wire()
    assert services_from_records({"web": live, "old": gone, "bad": b"\x01"}) == (
        {"web": 18080, "web:admin": 18081},
        1,
    )
    regs = {
        n: NodeRegistration(name=n, address=f"127.0.0.{i}", gossip_port=p).to_wire()
        for i, (n, p) in enumerate([("me", 1), ("n2", 7000), ("n3", 0)], 1)
    }
    assert seeds_from_records(regs, "me") == [("n2", "127.0.0.2", 7000)]
    # n4's own key, a body claiming to be n2: it seeds as n4 (the key the server let it write), never as n2.
    regs["n4"] = NodeRegistration(name="n2", address="10.9.9.9", gossip_port=7001).to_wire()
    assert seeds_from_records(regs, "me") == [("n2", "127.0.0.2", 7000), ("n4", "10.9.9.9", 7001)]


def test_local_endpoints() -> None:
    def st(rid: str, **kw: Any) -> ContainerStatus:
        base: dict[str, Any] = {
            "id": rid,
            "container_id": f"c-{rid}",
            "service": "web",
            "revision": 2,
            "state": ContainerState.RUNNING,
            "ready": True,
            "host_port": 30000,
            "ports": {"http": 30000},
        }
        base.update(kw)
        return ContainerStatus(**base)

    statuses = [
        st("r1"),
        st("r2", ready=False),
        st("r3", state=ContainerState.EXITED),
        st("r4", host_port=None, ports={}),
        st("r5", host_port=30005, ports={"http": 30005, "admin": 30006}),
        st("r6"),
    ]
    eps = local_endpoints(statuses, "n1", "127.0.0.3", withdrawn={"c-r6"})
    assert eps == [
        Endpoint("web", "127.0.0.3", 30000, "n1", "r1", 2, True),
        Endpoint("web", "127.0.0.3", 30005, "n1", "r5", 2, True),
        Endpoint("web:admin", "127.0.0.3", 30006, "n1", "r5", 2, True),
    ]
