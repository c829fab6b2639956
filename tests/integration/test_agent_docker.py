"""Agent against a real nats-server and the real Docker engine."""

from __future__ import annotations

import itertools
import json

import aiodocker
import pytest

from drover.agent.drivers.dockerview import L_CLUSTER, L_ID, L_NODE, L_REVISION, L_SERVICE
from tests.fixtures import wait_for
from tests.fixtures.nats import NatsServer
from tests.integration.agent_support import http_get, replica, running, running_agent, tap

pytestmark = [pytest.mark.docker, pytest.mark.nats]


async def _containers(docker: aiodocker.Docker, cluster: str, node: str | None = None) -> list[dict]:
    labels = [f"{L_CLUSTER}={cluster}"] + ([f"{L_NODE}={node}"] if node else [])
    rows = await docker.containers.list(all=True, filters=json.dumps({"label": labels}))
    out = []
    for r in rows:
        try:
            out.append(await r.show())
        except aiodocker.DockerError as exc:
            if exc.status != 404:  # being removed right now
                raise
    return out


async def test_two_replicas_labels_ports_scale_down_and_foreign_containers_survive(
    nats_server: NatsServer, docker_client: aiodocker.Docker, docker_cleanup: str, busybox_image: str
) -> None:
    cluster = docker_cleanup
    # A container of another tool and one of another node of the same cluster: both must survive.
    foreign = await docker_client.containers.create(
        {"Image": busybox_image, "Cmd": ["sleep", "300"], "Labels": {"test.cluster": cluster}}
    )
    other = await docker_client.containers.create(
        {
            "Image": busybox_image,
            "Cmd": ["sleep", "300"],
            "Labels": {L_CLUSTER: cluster, L_NODE: "other", L_SERVICE: "web", L_REVISION: "1", L_ID: "zzz"},
        }
    )
    try:
        await foreign.start()
        await other.start()
        async with tap(nats_server.url, cluster) as t, running_agent(nats_server.url, cluster, "n1") as agent:
            await t.assign("n1", [replica("a1"), replica("a2")])
            await wait_for(lambda: running(t.statuses("n1"), ["a1", "a2"]), 15, message="2 running")
            infos = await _containers(docker_client, cluster, "n1")
            assert len(infos) == 2
            by_id = {i["Config"]["Labels"][L_ID]: i for i in infos}
            for rid, info in by_id.items():
                labels = info["Config"]["Labels"]
                assert labels == {L_CLUSTER: cluster, L_SERVICE: "web", L_NODE: "n1", L_REVISION: "1", L_ID: rid}
                assert info["Name"] == f"/drover-web-{rid}"
                assert info["Config"]["Hostname"] == f"drover-web-{rid}"
                assert info["HostConfig"]["Init"] is True
                assert info["HostConfig"]["NanoCpus"] == 100_000_000
                assert info["HostConfig"]["Memory"] == 32 * 1024 * 1024
                assert "GREETING=hi" in info["Config"]["Env"]
                binding = info["NetworkSettings"]["Ports"]["8080/tcp"][0]
                assert binding["HostIp"] == "127.0.0.1"
                st = t.statuses("n1")[rid]
                assert st.host_port == int(binding["HostPort"])
                assert st.ports == {"http": st.host_port}
                assert st.container_id == info["Id"]
                assert st.ready
                _code, body = await wait_for(
                    lambda p=st.host_port: _ok(http_get("127.0.0.1", p)), 10, message="httpd answers"
                )
                assert "hello from drover" in body
            hb = t.heartbeats["n1"]
            assert hb.boot_id == agent.boot_id and hb.generation == 1
            reg = await t.store.nodes.get("n1")
            assert reg.value is not None

            await t.assign("n1", [replica("a1")])
            await wait_for(
                lambda: set(t.statuses("n1")) == {"a1"} and running(t.statuses("n1"), ["a1"]),
                15,
                message="scaled to 1",
            )
            await wait_for(lambda: _count(docker_client, cluster, "n1", 1), 10, message="one container left")
            assert (await foreign.show())["State"]["Running"]
            assert (await other.show())["State"]["Running"]
            assert t.events_of("removed")
    finally:
        for c in (foreign, other):
            await c.delete(force=True)


async def _ok(coro):  # type: ignore[no-untyped-def]
    code, body = await coro
    return (code, body) if code == 200 else None


async def _count(docker: aiodocker.Docker, cluster: str, node: str, n: int) -> bool:
    return len(await _containers(docker, cluster, node)) == n


async def test_restarted_agent_adopts_containers(
    nats_server: NatsServer, docker_client: aiodocker.Docker, docker_cleanup: str, busybox_image: str
) -> None:
    cluster = docker_cleanup
    async with tap(nats_server.url, cluster) as t:
        await t.assign("n1", [replica("b1"), replica("b2")])
        async with running_agent(nats_server.url, cluster, "n1"):
            await wait_for(lambda: running(t.statuses("n1"), ["b1", "b2"]), 15)
            before = {i["Id"]: i["State"]["StartedAt"] for i in await _containers(docker_client, cluster)}
        started = len(t.events_of("started"))
        async with running_agent(nats_server.url, cluster, "n1") as agent2:
            await wait_for(lambda: t.heartbeats["n1"].boot_id == agent2.boot_id, 10)
            await wait_for(lambda: running(t.statuses("n1"), ["b1", "b2"]), 10)
            after = {i["Id"]: i["State"]["StartedAt"] for i in await _containers(docker_client, cluster)}
            assert after == before  # same containers, not even restarted
            assert {s.container_id for s in t.statuses("n1").values()} == set(before)
            assert len(t.events_of("started")) == started


async def test_exited_container_restarts_unless_never(
    nats_server: NatsServer, docker_client: aiodocker.Docker, docker_cleanup: str, busybox_image: str
) -> None:
    cluster = docker_cleanup
    crash = ["sh", "-c", "sleep 0.2; exit 3"]
    async with tap(nats_server.url, cluster) as t, running_agent(nats_server.url, cluster, "n1"):
        await t.assign(
            "n1",
            [
                replica("c1", service="crash", command=crash, restart="always"),
                replica("c2", service="once", command=crash, restart="never"),
                replica("c3", service="ok", command=["sh", "-c", "exit 0"], restart="on-failure"),
            ],
        )
        await wait_for(lambda: t.statuses("n1").get("c1") and t.statuses("n1")["c1"].restarts >= 2, 15)
        st = await wait_for(lambda: (s := t.statuses("n1").get("c2")) and s.state == "exited" and s, 10)
        assert st.exit_code == 3
        st3 = await wait_for(lambda: (s := t.statuses("n1").get("c3")) and s.state == "exited" and s, 10)
        assert st3.exit_code == 0
        # A few more heartbeats later c2/c3 are still exited and were never restarted.
        seen = t.hb_count["n1"]
        await wait_for(lambda: t.hb_count["n1"] >= seen + 5, 10)
        assert t.statuses("n1")["c2"].restarts == 0 and t.statuses("n1")["c2"].state == "exited"
        assert t.statuses("n1")["c3"].restarts == 0 and t.statuses("n1")["c3"].state == "exited"
        assert any(e.container == "c1" for e in t.events_of("restarted"))
        assert any(e.container == "c2" and "exit code 3" in e.message for e in t.events_of("died"))


async def test_failing_http_probe_restarts_the_container(
    nats_server: NatsServer, docker_client: aiodocker.Docker, docker_cleanup: str, busybox_image: str
) -> None:
    cluster = docker_cleanup
    health = {
        "http": {"path": "/", "port": 8080}, "tcp": None, "exec": None,
        "interval": 0.2, "timeout": 0.5, "failure_threshold": 2, "initial_delay": 0.0,
    }  # fmt: skip
    async with tap(nats_server.url, cluster) as t, running_agent(nats_server.url, cluster, "n1"):
        await t.assign(
            "n1",
            [
                replica("p1", service="bad", command=["httpd", "-f", "-p", "9090", "-h", "/www"], health=health),
                replica("p2", service="good", health=health),
            ],
        )
        await wait_for(lambda: (s := t.statuses("n1").get("p2")) and s.ready, 15, message="good one ready")
        await wait_for(lambda: (s := t.statuses("n1").get("p1")) and s.restarts >= 1, 20, message="bad restarted")
        assert not t.statuses("n1")["p1"].ready
        assert t.statuses("n1")["p2"].restarts == 0
        assert any(e.container == "p1" for e in t.events_of("probe-failed"))


async def test_two_agents_share_the_engine(
    nats_server: NatsServer, docker_client: aiodocker.Docker, docker_cleanup: str, busybox_image: str
) -> None:
    cluster = docker_cleanup
    async with (
        tap(nats_server.url, cluster) as t,
        running_agent(nats_server.url, cluster, "n1", address="127.0.0.1"),
        running_agent(nats_server.url, cluster, "n2", address="127.0.0.2"),
    ):
        await t.assign("n1", [replica("d1")])
        await t.assign("n2", [replica("d2"), replica("d3")])
        await wait_for(lambda: running(t.statuses("n1"), ["d1"]) and running(t.statuses("n2"), ["d2", "d3"]), 20)
        assert set(t.statuses("n1")) == {"d1"}
        assert set(t.statuses("n2")) == {"d2", "d3"}
        n1 = await _containers(docker_client, cluster, "n1")
        n2 = await _containers(docker_client, cluster, "n2")
        assert [i["Config"]["Labels"][L_ID] for i in n1] == ["d1"]
        assert sorted(i["Config"]["Labels"][L_ID] for i in n2) == ["d2", "d3"]
        assert all(i["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostIp"] == "127.0.0.2" for i in n2)
        _code, body = await wait_for(lambda: _ok(http_get("127.0.0.2", t.statuses("n2")["d2"].host_port or 0)), 10)
        assert "hello from drover" in body
        # Emptying n2's assignment leaves n1's container alone.
        await t.assign("n2", [])
        await wait_for(lambda: _count(docker_client, cluster, "n2", 0), 15)
        assert await _count(docker_client, cluster, "n1", 1)


async def test_agent_survives_a_nats_restart(
    nats_server: NatsServer, docker_client: aiodocker.Docker, docker_cleanup: str, busybox_image: str
) -> None:
    cluster = docker_cleanup
    async with running_agent(nats_server.url, cluster, "n1") as agent:
        async with tap(nats_server.url, cluster) as t:
            await t.assign("n1", [replica("e1")])
            await wait_for(lambda: running(t.statuses("n1"), ["e1"]), 15)
            cid = t.statuses("n1")["e1"].container_id
        await nats_server.astop()
        await wait_for(lambda: not agent.nc.is_connected, 10)  # type: ignore[union-attr]
        await nats_server.astart()
        async with tap(nats_server.url, cluster) as t:
            await wait_for(lambda: running(t.statuses("n1"), ["e1"]), 15, message="heartbeats resume")
            assert t.statuses("n1")["e1"].container_id == cid
            await t.store.nodes.delete("n1")
            await wait_for(lambda: _registered(t), 15, message="re-registered")
            await t.assign("n1", [replica("e1"), replica("e2")])
            await wait_for(lambda: running(t.statuses("n1"), ["e1", "e2"]), 15, message="assignment after restart")


async def _registered(t) -> bool:  # type: ignore[no-untyped-def]
    try:
        e = await t.store.nodes.get("n1")
    except Exception:
        return False
    return e.value is not None


async def test_crash_loop_backoff_grows(
    nats_server: NatsServer, docker_client: aiodocker.Docker, docker_cleanup: str, busybox_image: str
) -> None:
    """A container that exits at once is restarted with a growing delay (0, 1, 2, 4 s …) and shows crash-loop."""
    cluster = docker_cleanup
    async with tap(nats_server.url, cluster) as t, running_agent(nats_server.url, cluster, "n1"):
        await t.assign("n1", [replica("cl", service="crash", command=["sh", "-c", "exit 1"], restart="always")])
        await wait_for(lambda: len([e for e in t.events_of("restarted") if e.container == "cl"]) >= 4, 30,
                       message="four restarts")
        await wait_for(lambda: (s := t.statuses("n1").get("cl")) and s.state == "crash-loop", 10,
                       message="crash-loop state")
        assert any(e.container == "cl" for e in t.events_of("crash-loop"))
        times = [e.time for e in t.events_of("restarted") if e.container == "cl"][:4]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # Each gap is the backoff (1, 2, 4 s) plus the short life of the container: it must keep growing.
        assert gaps[0] >= 0.9 and gaps[1] >= 1.9 and gaps[2] >= 3.9, gaps
        assert gaps[0] < gaps[1] < gaps[2], gaps


async def test_restart_puts_the_cpu_quota_back(
    nats_server: NatsServer, docker_client: aiodocker.Docker, docker_cleanup: str, busybox_image: str
) -> None:
    """The CPU quota is lifted while a container starts (a small quota throttles runc) and is in place once it
    runs, after the first start and after a restart."""
    cluster = docker_cleanup
    async with tap(nats_server.url, cluster) as t, running_agent(nats_server.url, cluster, "n1"):
        await t.assign("n1", [replica("q1", service="quota", command=["sleep", "3600"])])
        st = await wait_for(lambda: (s := t.statuses("n1").get("q1")) and s.state == "running" and s, 20)
        c = await docker_client.containers.get(st.container_id)
        assert c._container["HostConfig"]["NanoCpus"] == 100_000_000
        await c.kill()
        await wait_for(lambda: (s := t.statuses("n1").get("q1")) and s.restarts >= 1 and s.state == "running", 20,
                       message="restarted")
        c = await docker_client.containers.get(st.container_id)
        assert c._container["HostConfig"]["NanoCpus"] == 100_000_000
