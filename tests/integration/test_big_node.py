"""One node with 10,000 replicas (a hollow node, its own process) and a controller (another process) on a real
nats-server: the node's heartbeats (about 0.8 MB of container states, over 2 MB in the record format) travel
in parts within the server's max payload, the node stays ready throughout, and every replica's state reaches
the controller (``get_containers`` lists all 10,000 running, as ``drover get containers`` does)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.msg import Msg

from drover.shared import bus, hbwire, wire
from drover.shared.models import ApiReply
from drover.shared.subjects import Names
from tests.fixtures import wait_for
from tests.fixtures.nats import NatsServer
from tests.integration.daemons import drover_daemons

REPLICAS = 10_000
NODE = "big-1"


@pytest.fixture
def daemons(nats_server: NatsServer, cluster_name: str, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    fleet = ["agent", "--driver", "sim", "--count", "1", "--node-prefix", "big", "--cpu", "64", "--memory", "64Gi"]
    with drover_daemons(nats_server.url, cluster_name, tmp_path, ["controller"], fleet) as procs:
        yield procs


async def test_node_with_ten_thousand_replicas_is_heard(
    daemons: list[subprocess.Popen[bytes]], nats_server: NatsServer, cluster_name: str, tmp_path: Path
) -> None:
    names = Names(cluster_name)
    nc = await bus.connect(nats_server.url, name="test")
    beats: list[dict[str, Any]] = []

    async def on_hb(msg: Msg) -> None:
        body = wire.decode(msg.data)
        beats.append({"size": len(msg.data), "parts": body["parts"], "last": body["part"] == body["parts"] - 1})

    async def call(verb: str, **body: Any) -> Any:
        reply = ApiReply.from_wire((await nc.request(names.api(verb), wire.encode(body), timeout=30)).data)
        assert reply.ok, f"{verb}: {reply.error}"
        return reply.data

    async def node_row() -> dict[str, Any]:
        rows = await call("get_nodes", name=NODE)
        assert len(rows) == 1
        return dict(rows[0])

    statuses: list[str] = []  # the node's status at every look, from the start of the load to the end

    async def all_running() -> bool:
        statuses.append((await node_row())["status"])
        rows = await _all_containers(call)
        running = [r for r in rows if r["node"] == NODE and r["state"] == "running"]
        return len(running) == REPLICAS

    await nc.subscribe(names.fleet("big", "hb", NODE), cb=on_hb)  # a hollow fleet's subject
    try:
        await wait_for(lambda: _is_ready(node_row), 60, 0.5, "the node registered and ready", ignore=(Exception,))
        await call("leader")
        manifest = {"apiVersion": "drover/v1", "kind": "Service", "metadata": {"name": "bulk"},
                    "spec": {"image": "local/busybox:latest", "replicas": REPLICAS,
                             "resources": {"cpu": 0.001, "memory": "1Mi"}}}
        await call("apply", manifests=[manifest], sources=["bulk.yaml"])
        await wait_for(all_running, 240, 1.0, f"{REPLICAS} replicas running on {NODE}", ignore=(Exception,))
        # ... and it goes on being heard: a few more whole heartbeats, and still ready with all of them
        whole = len([b for b in beats if b["last"]])
        await wait_for(lambda: len([b for b in beats if b["last"]]) >= whole + 3, 30, 0.2, "three more heartbeats")
        assert await all_running()
        # heard all along: the node was never lost
        assert set(statuses) == {"ready"}, statuses
        # ... in parts, each within the server's max payload (the record format would be over 2 MB)
        big = [b for b in beats if b["parts"] > 1]
        assert big, "no heartbeat was sent in parts"
        assert max(b["size"] for b in beats) <= min(hbwire.PART_MAX, nc.max_payload)
        # ... and nothing was dropped or refused on either side
        logs = await asyncio.to_thread(_logs, tmp_path)
        assert "heartbeat not sent" not in logs and "bad heartbeat dropped" not in logs
        assert all(p.poll() is None for p in daemons)
        # what a user sees
        out = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "drover", "get", "containers", "-o", "json", "--nats",
                             nats_server.url, "--cluster", cluster_name], capture_output=True, timeout=120,
            env={**os.environ, "DROVER_HOME": str(tmp_path / "home")},
        )
        assert out.returncode == 0, out.stderr
        rows = json.loads(out.stdout)
        assert len(rows) == REPLICAS and {(r["node"], r["state"]) for r in rows} == {(NODE, "running")}
    finally:
        await nc.drain()


async def _all_containers(call: Any) -> list[dict[str, Any]]:
    """Every container, page by page (a reply of 10,000 rows would be over the max payload), as the CLI reads."""
    rows: list[dict[str, Any]] = []
    while True:
        page = await call("get_containers", name=None, page=2000, **({"after": _key(rows[-1])} if rows else {}))
        rows += page
        if len(page) < 2000:
            return rows


def _key(row: dict[str, Any]) -> list[str]:
    return [str(row["service"]), str(row["node"]), str(row["id"])]


def _logs(tmp_path: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in tmp_path.glob("*.log"))


async def _is_ready(row: Any) -> bool:
    return bool((await row())["status"] == "ready")
