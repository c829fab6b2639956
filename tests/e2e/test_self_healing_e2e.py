"""Self-healing end to end: ``drover controller`` and ``drover agent`` as separate processes (so they can be
SIGKILLed like a crashed host), a real nats-server and the local Docker engine, checked through the
``drover`` client commands and ``docker ps``.

1. A dead host (agent SIGKILLed, its containers ``docker kill``ed): its replicas move to the other nodes,
   the node shows ``lost``; when the agent comes back under the same name nothing is duplicated.
2. A SIGKILLed controller: containers keep running untouched; a new controller takes over and converges.
3. An agent killed and restarted within the node grace keeps its containers.
4. ``drain`` moves every replica off a node; ``uncordon`` makes it schedulable again.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nats
import pytest

from drover.shared.subjects import Names
from tests.fixtures import TEST_IMAGE, NatsServer, require_image, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.nats, pytest.mark.timeout(120)]

ADDRESSES = {"n1": "127.0.0.1", "n2": "127.0.0.2", "n3": "127.0.0.3"}
SERVICE = "heal"


def manifest(name: str = SERVICE, replicas: int = 6) -> str:
    return f"""\
apiVersion: drover/v1
kind: Service
metadata: {{name: {name}}}
spec:
  image: {TEST_IMAGE}
  command: ["sleep", "3600"]
  replicas: {replicas}
  resources: {{cpu: 0.01, memory: 8Mi}}
  stop_grace: 1s
  update: {{min_ready: 0s, progress_deadline: 60s}}
"""


def _docker(*args: str) -> str:
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"docker {' '.join(args)}: {r.stderr.strip()}"
    return r.stdout


class Cluster:
    """A controller and agents as ``python -m drover`` subprocesses, plus the client commands."""

    def __init__(self, nats: NatsServer, name: str, logdir: Path) -> None:
        self.url = nats.url
        self.name = name
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {**os.environ}
        for var in ("DROVER_NATS", "DROVER_CLUSTER"):
            self.env.pop(var, None)
        self.env["DROVER_HOME"] = str(logdir / "home")

    # ------------------------------------------------------------------ daemons
    def _spawn(self, label: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logdir / f"{label}-{len(self.procs)}.log").open("wb")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "drover", *args, "--nats", self.url, "--cluster", self.name],
                env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()
        self.procs.append(proc)
        return proc

    def controller(self, cid: str, grace: str = "3s") -> subprocess.Popen[bytes]:
        return self._spawn(f"controller-{cid}", "controller", "--id", cid, "--node-grace", grace)

    def agent(self, node: str) -> subprocess.Popen[bytes]:
        proc = self._spawn(f"agent-{node}", "agent", "--node", node, "--address", ADDRESSES[node])
        self.agents[node] = proc
        return proc

    @staticmethod
    def sigkill(proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL one process we started (by its PID) and reap it."""
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def close(self) -> None:
        for proc in self.procs:
            try:
                self.sigkill(proc)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass

    def logs(self) -> str:
        out = []
        for path in sorted(self.logdir.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()[-15:]
            out.append(f"--- {path.name}\n" + "\n".join(lines))
        return "\n".join(out)

    async def time_to_heartbeat(self, node: str, spawn: Callable[[], object], timeout: float = 120) -> float:
        """Seconds from ``spawn()`` (starting ``node``'s agent) to the first heartbeat it publishes."""
        nc = await nats.connect(self.url, allow_reconnect=False)
        try:
            heard = asyncio.Event()

            async def on_beat(_msg: Any) -> None:
                heard.set()

            await nc.subscribe(Names(self.name).heartbeat(node), cb=on_beat)
            await nc.flush()
            t0 = time.monotonic()
            spawn()
            await wait_for(heard.is_set, timeout, 0.05, f"first heartbeat of {node}")
            return time.monotonic() - t0
        finally:
            await nc.close()

    # ------------------------------------------------------------------ client commands
    async def cli(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "drover", "--nats", self.url, "--cluster", self.name, *args],
            env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    async def json(self, *args: str) -> Any:
        r = await self.cli(*args, "-o", "json")
        assert r.returncode == 0, f"drover {' '.join(args)} -> {r.returncode}: {r.stderr.strip()}"
        return json.loads(r.stdout)

    async def apply(self, text: str) -> None:
        path = self.logdir / "manifest.yaml"
        path.write_text(text)
        r = await self.cli("apply", "-f", str(path))
        assert r.returncode == 0, r.stderr

    async def nodes(self) -> dict[str, dict[str, Any]]:
        return {n["name"]: n for n in await self.json("get", "nodes")}

    async def containers(self, service: str = SERVICE) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self.json("get", "containers", "--service", service)
        return rows

    async def events(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self.json("events", "--limit", "1000")
        return rows

    async def wait_nodes(self, status: dict[str, str], timeout: float = 30) -> None:
        async def ok() -> bool:
            nodes = await self.nodes()
            return all(n in nodes and nodes[n]["status"] == s for n, s in status.items())

        await wait_for(ok, timeout, 0.3, f"nodes {status}")

    async def wait_settled(
        self, replicas: int, *, avoid: str | None = None, timeout: float = 40, service: str = SERVICE
    ) -> list[dict[str, Any]]:
        """All ``replicas`` running and ready (none on ``avoid``), and the service says so too."""

        async def ok() -> list[dict[str, Any]] | None:
            rows = await self.containers(service)
            if len(rows) != replicas or not all(r["state"] == "running" and r["ready"] for r in rows):
                return None
            if avoid is not None and any(r["node"] == avoid for r in rows):
                return None
            [svc] = await self.json("get", "services", service)
            return rows if (svc["replicas"], svc["ready"]) == (replicas, replicas) else None

        result: list[dict[str, Any]] = await wait_for(ok, timeout, 0.3, f"{replicas} replicas of {service} settled")
        return result

    # ------------------------------------------------------------------ the engine's view
    async def docker_running(
        self, service: str = SERVICE, node: str | None = None, *, any_state: bool = False
    ) -> dict[str, str]:
        """Running (or with ``any_state`` all) containers of ``service`` on the engine: docker id -> replica id."""
        filters = ["-a"] if any_state else []
        filters += ["--filter", f"label=drover.cluster={self.name}", "--filter", f"label=drover.service={service}"]
        if node is not None:
            filters += ["--filter", f"label=drover.node={node}"]
        out = await asyncio.to_thread(
            _docker, "ps", "--no-trunc", *filters, "--format", '{{.ID}} {{.Label "drover.id"}}'
        )
        return dict(line.split(" ", 1) for line in out.splitlines() if line.strip())

    @staticmethod
    async def started_at(ids: list[str]) -> dict[str, str]:
        """When the engine last started each container (a restart in place changes it, the id does not)."""
        out = await asyncio.to_thread(_docker, "inspect", "--format", "{{.Id}} {{.State.StartedAt}}", *ids)
        return dict(line.split(" ", 1) for line in out.splitlines() if line.strip())


@pytest.fixture
async def cluster(nats_server: NatsServer, docker_cleanup: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    require_image(TEST_IMAGE)
    c = Cluster(nats_server, docker_cleanup, tmp_path)
    try:
        yield c
    finally:
        c.close()  # every daemon by PID; docker_cleanup then removes the cluster's containers
        print(c.logs())  # shown by pytest only when the test failed


async def start(c: Cluster, nodes: list[str], grace: str = "3s", replicas: int = 6) -> list[dict[str, Any]]:
    c.controller("ctl-1", grace)
    for node in nodes:
        c.agent(node)
    await c.wait_nodes({n: "ready" for n in nodes})
    await c.apply(manifest(replicas=replicas))
    return await c.wait_settled(replicas)


# ---------------------------------------------------------------------- 1. a dead host
async def test_lost_node_replicas_rescheduled_and_no_duplicates_on_return(cluster: Cluster) -> None:
    c = cluster
    before = await start(c, ["n1", "n2", "n3"])
    victim = max(ADDRESSES, key=lambda n: sum(r["node"] == n for r in before))
    victim_replicas = {r["id"] for r in before if r["node"] == victim}
    assert victim_replicas, before
    victim_docker = list(await c.docker_running(node=victim))

    # A dead host: the agent dies and so do its containers.
    c.sigkill(c.agents[victim])
    await asyncio.to_thread(_docker, "kill", *victim_docker)

    after = await c.wait_settled(6, avoid=victim)
    await c.wait_nodes({victim: "lost"}, timeout=10)
    assert {r["node"] for r in after} <= set(ADDRESSES) - {victim}
    replaced = [r for r in after if r["id"] not in {b["id"] for b in before}]
    assert len(replaced) == len(victim_replicas), after
    assert all(r["restarts"] >= 1 for r in replaced), replaced
    events = await c.events()
    assert any(e["kind"] == "node-lost" and e["node"] == victim for e in events), events
    rescheduled = {e["container"] for e in events if e["kind"] == "rescheduled" and e["node"] == victim}
    assert rescheduled == victim_replicas, events

    # The host comes back under the same name: it rejoins, and nothing of the service is duplicated.
    c.agent(victim)
    most = 0

    async def converged() -> bool:
        nonlocal most
        running = await c.docker_running()
        most = max(most, len(running))
        assert most <= 6, f"{most} containers of {SERVICE} running on the engine"
        nodes = await c.nodes()
        if nodes[victim]["status"] != "ready":
            return False
        on_victim = await c.docker_running(node=victim)
        rows = await c.containers()
        return (
            len(running) == 6
            and not on_victim
            and len(rows) == 6
            and all(r["state"] == "running" and r["node"] != victim for r in rows)
        )

    await wait_for(converged, 30, 0.3, "the returned node converges without duplicates")
    # Stay converged for a few more observations: no late duplicate, nothing drifts back to the old node.
    for _ in range(5):
        running = await c.docker_running()
        assert len(running) == 6, running
        assert not await c.docker_running(node=victim)

    async def victim_clean() -> bool:
        return not await c.docker_running(node=victim, any_state=True)

    await wait_for(victim_clean, 15, 0.3, f"the dead containers left on {victim} are removed")
    rows = await c.containers()
    assert set((await c.docker_running()).values()) == {r["id"] for r in rows}


# ---------------------------------------------------------------------- 2. a dead controller
async def test_controller_killed_containers_untouched_and_new_controller_converges(cluster: Cluster) -> None:
    c = cluster
    before = await start(c, ["n1", "n2", "n3"])
    docker_before = await c.docker_running()
    assert len(docker_before) == 6
    started_before = await c.started_at(list(docker_before))

    [ctl] = [p for p in c.procs if p not in c.agents.values()]
    c.sigkill(ctl)
    # Without a controller the agents keep everything running as it is.
    for _ in range(5):
        assert await c.docker_running() == docker_before

    c.controller("ctl-2")

    async def led_by_new() -> bool:
        r = await c.cli("leader", "-o", "json")
        return r.returncode == 0 and json.loads(r.stdout).get("id") == "ctl-2"

    await wait_for(led_by_new, 20, 0.3, "ctl-2 leads")
    after = await c.wait_settled(6)
    assert {r["id"] for r in after} == {r["id"] for r in before}
    [svc] = await c.json("get", "services", SERVICE)
    assert (svc["replicas"], svc["ready"]) == (6, 6)
    assert await c.docker_running() == docker_before, "containers were replaced"
    assert await c.started_at(list(docker_before)) == started_before, "containers were restarted"

    r = await c.cli("scale", SERVICE, "4")
    assert (r.returncode, r.stdout) == (0, f"service/{SERVICE} scaled to 4\n"), r.stderr
    scaled = await c.wait_settled(4)
    assert {r["id"] for r in scaled} <= {r["id"] for r in before}

    async def four_on_engine() -> bool:
        return len(await c.docker_running()) == 4

    await wait_for(four_on_engine, 20, 0.3, "4 containers on the engine after scale")


# ---------------------------------------------------------------------- 3. an agent back within the grace
GRACE_MARGIN = 3.0  # the grace is this many times an agent's start here and now (plus 2 s), at least 5 s


@pytest.mark.timeout(300)
async def test_agent_restarted_within_grace_keeps_its_containers(cluster: Cluster) -> None:
    c = cluster
    # An agent's restart is its start: measure one on this machine at its present load (before any
    # controller, so nothing can judge the node meanwhile) and give the controller a grace well above it.
    # A loaded machine gets a longer grace instead of a restart that overruns a fixed 5 s one.
    first_start = await c.time_to_heartbeat("n1", lambda: c.agent("n1"))
    c.sigkill(c.agents["n1"])
    grace = max(5.0, GRACE_MARGIN * first_start + 2.0)
    before = await start(c, ["n1", "n2"], grace=f"{grace:.1f}s", replicas=4)
    docker_before = await c.docker_running()
    assert len(docker_before) == 4
    started_before = await c.started_at(list(docker_before))
    on_n1 = await c.docker_running(node="n1")
    assert on_n1, before

    loop = asyncio.get_running_loop()
    killed = loop.time()
    c.sigkill(c.agents["n1"])  # before listening: a beat of the old agent still in flight must not count
    restart = await c.time_to_heartbeat("n1", lambda: c.agent("n1"))
    # What the test proves holds only for a restart within the grace: say so if the machine overran even that.
    timing = f"restart {restart:.1f}s, grace {grace:.1f}s (first start {first_start:.1f}s)"
    print(timing)  # shown when the test fails
    assert restart < grace, timing

    async def back() -> bool:
        nodes = await c.nodes()
        rows = await c.containers()
        return nodes["n1"]["status"] == "ready" and all(r["state"] == "running" for r in rows)

    await wait_for(back, max(20.0, 2 * grace), 0.3, "n1 back and ready")
    # Wait past the grace (from the kill) so a late loss decision would have happened by now.
    past_grace = killed + grace + 1.0

    async def grace_over() -> bool:
        assert await c.docker_running() == docker_before, "containers changed"
        return loop.time() >= past_grace

    await wait_for(grace_over, grace + 15, 0.5, "grace period over")
    after = await c.wait_settled(4)
    assert {r["id"] for r in after} == {r["id"] for r in before}
    assert await c.docker_running() == docker_before
    assert await c.started_at(list(docker_before)) == started_before, "containers were restarted"
    events = await c.events()
    assert not [e for e in events if e["kind"] in ("rescheduled", "node-lost")], events


# ---------------------------------------------------------------------- 4. drain and uncordon
async def test_drain_moves_replicas_off_and_uncordon_restores(cluster: Cluster) -> None:
    c = cluster
    before = await start(c, ["n1", "n2", "n3"])
    target = "n2"
    assert any(r["node"] == target for r in before), before
    old_on_target = await c.docker_running(node=target)

    r = await c.cli("drain", target)
    assert r.returncode == 0, r.stderr
    await c.wait_nodes({target: "draining"}, timeout=10)
    after = await c.wait_settled(6, avoid=target)
    assert {r["node"] for r in after} <= {"n1", "n3"}
    # Replacements are new replicas; the old ones on the drained node are gone from the engine.
    assert not ({r["id"] for r in after} & set(old_on_target.values()))

    async def target_empty() -> bool:
        out = await asyncio.to_thread(
            _docker, "ps", "-aq", "--filter", f"label=drover.cluster={c.name}", "--filter",
            f"label=drover.node={target}",
        )  # fmt: skip
        return not out.strip()

    await wait_for(target_empty, 20, 0.3, f"{target}'s containers removed")
    assert len(await c.docker_running()) == 6
    nodes = await c.nodes()
    assert nodes[target]["status"] == "draining"

    r = await c.cli("uncordon", target)
    assert r.returncode == 0, r.stderr
    await c.wait_nodes({target: "ready"}, timeout=10)
    # Schedulable again: growing the service places new replicas on it (it is the emptiest node).
    r = await c.cli("scale", SERVICE, "9")
    assert r.returncode == 0, r.stderr
    grown = await c.wait_settled(9)
    assert any(r["node"] == target for r in grown), grown
