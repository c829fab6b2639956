"""Stall-safe node loss with a real controller process on a real nats-server (the test plays the agents):
a controller SIGSTOPped for longer than the node grace moves nothing when it resumes, and declares no node
lost; a node that really stops afterwards is still noticed."""

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
from drover.shared.models import ApiReply, Assignment
from drover.shared.subjects import Names
from tests.fixtures import wait_for
from tests.fixtures.nats import NatsServer
from tests.integration.controller.test_controller import FakeAgents, manifest

GRACE = 2.0
DROVER = str(Path(sys.executable).parent / "drover")


def _start_controller(url: str, cluster: str, home: Path, log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [DROVER, "controller", "--nats", url, "--cluster", cluster, "--node-grace", f"{GRACE}s"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "DROVER_HOME": str(home)},
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
async def cluster(
    nats_server: NatsServer, cluster_name: str, tmp_path: Path
) -> AsyncIterator[tuple[subprocess.Popen[bytes], FakeAgents, Any]]:
    log = (tmp_path / "controller.log").open("wb")
    proc = _start_controller(nats_server.url, cluster_name, tmp_path, log)
    nc = await bus.connect(nats_server.url, name="test")
    store = await bus.open_store(nc, cluster_name)
    names = Names(cluster_name)
    agents = FakeAgents(nc, store, names)

    async def call(verb: str, **body: Any) -> ApiReply:
        msg = await nc.request(names.api(verb), wire.encode(body), timeout=5)
        return ApiReply.from_wire(msg.data)

    try:
        yield proc, agents, call
    finally:
        agents.stop()
        await asyncio.to_thread(_stop, proc)
        await nc.drain()
        log.close()


async def _placement(agents: FakeAgents) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for node in ("n1", "n2", "n3"):
        e = await agents.store.assignments.get(node)
        out[node] = {c.id for c in Assignment.from_wire(e.value).containers}
    return out


async def _ready(call: Any, n: int) -> bool:
    rows = (await call("get_services", name="web")).data or []
    return bool(rows) and rows[0]["ready"] == n


async def test_sigstopped_controller_moves_nothing_when_resumed(cluster: Any) -> None:
    proc, agents, call = cluster
    for n in ("n1", "n2", "n3"):
        await agents.add(n)
    await wait_for(lambda: _api_up(call), 30, message="controller answers", ignore=(Exception,))
    assert (await call("apply", manifests=[manifest(replicas=6)])).ok
    await wait_for(lambda: _ready(call, 6), 20, message="6 replicas ready")
    before = await _placement(agents)
    assert sum(len(v) for v in before.values()) == 6

    # Paused for more than twice the node grace; the agents keep sending heartbeats meanwhile.
    proc.send_signal(signal.SIGSTOP)
    paused = time.monotonic()
    await wait_for(lambda: time.monotonic() - paused > 2 * GRACE + 1, 20)
    proc.send_signal(signal.SIGCONT)
    resumed = time.monotonic()

    # Watch for longer than the grace after resuming: the placement never changes, no node is called lost.
    async def moved_or_settled() -> bool:
        return await _placement(agents) != before or time.monotonic() - resumed > 2 * GRACE + 1

    await wait_for(moved_or_settled, 30)
    assert await _placement(agents) == before
    kinds = [(e["kind"], e["node"]) for e in (await call("events", limit=0)).data]
    assert not [k for k in kinds if k[0] in ("node-lost", "rescheduled")], kinds

    # A node that really stops is still noticed and its replicas move.
    agents.alive.discard("n3")
    await wait_for(lambda: _has(call, "node-lost", "n3"), 20, message="n3 lost after it really stopped")
    await wait_for(lambda: _moved_off(agents, "n3"), 20, message="n3's replicas moved")


async def _api_up(call: Any) -> bool:
    return (await call("get_nodes")).ok


async def _has(call: Any, kind: str, node: str) -> bool:
    return any(e["kind"] == kind and e["node"] == node for e in (await call("events", limit=0)).data)


async def _moved_off(agents: FakeAgents, node: str) -> bool:
    p = await _placement(agents)
    return not p[node] and sum(len(v) for v in p.values()) == 6

