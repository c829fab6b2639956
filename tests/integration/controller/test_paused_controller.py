"""A paused controller does not make the API unavailable: two real controller processes on a real
nats-server, the leader SIGSTOPped, and the real CLI still applies and scales (its unanswered requests are
sent again and reach the live controller); a retried write is done once and answered as the first time."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drover.shared import bus, wire
from drover.shared.models import ApiReply, ServiceRecord
from drover.shared.subjects import Names
from tests.fixtures import wait_for
from tests.fixtures.nats import NatsServer
from tests.integration.controller.test_stall import _stop

DROVER = str(Path(sys.executable).parent / "drover")
CLI_TIMEOUT = 10.0  # the CLI's own overall request timeout for scale (apply allows more)


class Cluster:
    def __init__(self, url: str, name: str, home: Path) -> None:
        self.url, self.name, self.home = url, name, home
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, ident: str) -> None:
        log = (self.home / f"{ident}.log").open("wb")
        self.procs[ident] = subprocess.Popen(
            [DROVER, "controller", "--nats", self.url, "--cluster", self.name, "--id", ident],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "DROVER_HOME": str(self.home)},
        )
        log.close()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DROVER_HOME": str(self.home), "DROVER_NATS": self.url, "DROVER_CLUSTER": self.name}
        return subprocess.run(
            [DROVER, *args], capture_output=True, text=True, env=env, timeout=60, cwd=self.home, check=False
        )


@pytest.fixture
async def cluster(
    nats_server: NatsServer, cluster_name: str, tmp_path: Path
) -> AsyncIterator[tuple[Cluster, Any, bus.ClusterStore]]:
    c = Cluster(nats_server.url, cluster_name, tmp_path)
    nc = await bus.connect(nats_server.url, name="test")
    store = await bus.open_store(nc, cluster_name)
    names = Names(cluster_name)

    async def call(verb: str, **body: Any) -> ApiReply:
        msg = await nc.request(names.api(verb), wire.encode(body), timeout=5)
        return ApiReply.from_wire(msg.data)

    try:
        c.start("ctl-a")
        c.start("ctl-b")
        yield c, call, store
    finally:
        for proc in c.procs.values():
            await asyncio.to_thread(_stop, proc)
        await nc.drain()


async def _both_answer(call: Any) -> bool:
    """Both controllers are up: several reads in a row are answered (each is one random pick of the group)."""
    try:
        return all([(await call("get_services", name=None)).ok for _ in range(6)])
    except Exception:
        return False


async def _leader(call: Any) -> str | None:
    try:
        reply = await call("leader")
    except Exception:
        return None
    return str(reply.data["id"]) if reply.ok else None


def _spec(name: str) -> dict[str, Any]:
    return {"apiVersion": "drover/v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"image": "local/busybox:latest", "replicas": 1}}


def _manifest(path: Path, name: str) -> Path:
    path.write_text(wire_yaml(_spec(name)))
    return path


def wire_yaml(doc: dict[str, Any]) -> str:
    import json

    return json.dumps(doc)  # JSON is YAML


async def test_cli_writes_succeed_while_the_leader_is_paused(cluster: tuple[Cluster, Any, Any]) -> None:
    c, call, store = cluster
    await wait_for(lambda: _both_answer(call), 60)
    await wait_for(lambda: _leader(call), 30)
    leader = await _leader(call)
    assert leader in c.procs
    assert c.cli("apply", "-f", str(_manifest(c.home / "web.yaml", "web"))).stdout.strip() == "service/web created"

    c.procs[leader].send_signal(signal.SIGSTOP)
    try:
        # Each command's first request goes to the paused controller about half the time: all must still
        # succeed, well within the CLI's timeout, with their usual output.
        for i, replicas in enumerate((3, 2, 4, 1, 5, 2)):
            began = time.monotonic()
            done = await asyncio.to_thread(c.cli, "scale", "web", str(replicas))
            assert (done.returncode, done.stdout.strip()) == (0, f"service/web scaled to {replicas}"), done.stderr
            assert time.monotonic() - began < CLI_TIMEOUT + 5
            name = f"api{i}"
            done = await asyncio.to_thread(c.cli, "apply", "-f", str(_manifest(c.home / f"{name}.yaml", name)))
            assert (done.returncode, done.stdout.strip()) == (0, f"service/{name} created"), done.stderr
    finally:
        c.procs[leader].send_signal(signal.SIGCONT)
    # The resumed controller answers from its own state once it has caught up (its queued copies of the
    # writes above find their replies stored and change nothing): then every read shows the last writes.
    await wait_for(lambda: _every_read_shows(call, {"web": 2, **{f"api{i}": 1 for i in range(6)}}), 30)
    stored = ServiceRecord.from_wire((await store.services.get("web")).value)
    assert stored.replicas == 2


async def _every_read_shows(call: Any, replicas: dict[str, int]) -> bool:
    for _ in range(6):  # each read is a random pick of the two controllers
        rows = {r["name"]: r["replicas"] for r in (await call("get_services", name=None)).data}
        if rows != replicas:
            return False
    return True


async def test_a_retried_write_is_done_once_and_answered_the_same(cluster: tuple[Cluster, Any, Any]) -> None:
    _, call, _ = cluster
    await wait_for(lambda: _both_answer(call), 60)
    body = {"manifests": [_spec("web")], "request_id": "r-1"}
    first = await call("apply", **body)
    assert first.ok, first.error
    # The same request again, many times: each is a random pick of the two controllers, so both see it.
    for _ in range(8):
        again = await call("apply", **body)
        assert again.data == first.data  # "created", not "unchanged"
    # Done once: a different request id with the same manifest finds it unchanged, at revision 1.
    other = await call("apply", **{**body, "request_id": "r-2"})
    assert other.data != first.data
    assert [r["revision"] for r in (await call("get_services", name="web")).data] == [1]
    bad = await call("scale", name="web", replicas=2, request_id="not a key!")
    assert not bad.ok and bad.code == "invalid" and "request_id" in bad.error
