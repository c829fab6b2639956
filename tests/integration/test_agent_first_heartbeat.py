"""A (re)started agent's first heartbeat: early, truthful, and before the heavy imports.

``drover up`` restarts a killed agent about 1 s after it died and the controller declares a node lost after
3 s of silence, so what the agent imports before its first heartbeat is on the clock. The real ``drover
agent`` command runs in a fresh interpreter against a real nats-server and the real Docker engine, where a
container of its node already runs (as after a SIGKILL of the previous agent): its first heartbeat must list
that container as running (the controller takes a node's report as the truth about its replicas), and by then
neither aiohttp/aiodocker, rich nor PyYAML may have been imported.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import msgpack
import nats
import pytest

from drover.agent.drivers.base import RUNNING
from drover.agent.drivers.docker import DockerDriver
from drover.shared import hbwire
from drover.shared.subjects import Names
from tests.fixtures import wait_for
from tests.fixtures.nats import NatsServer
from tests.integration.agent_support import replica

pytestmark = [pytest.mark.docker, pytest.mark.nats]

# Not to be imported before the first heartbeat (each costs 0.05-0.8 s of a restart on a busy machine).
HEAVY = ["aiohttp", "aiodocker", "rich", "yaml"]

# The agent command as `python -m drover agent …` runs it; at its first heartbeat sent it prints the heavy
# modules loaded so far and ends the process. (``load_daemon`` first, as the command does, so that importing
# the heartbeat module here changes nothing about what the command imports.)
PROBE = """
import json, os, sys
from drover.cli import natsload
natsload.load_daemon("")
from drover.agent import heartbeat
heavy, send = json.loads(sys.argv[1]), heartbeat.HeartbeatSender.send
async def first(self):
    sent = await send(self)
    if sent:
        loaded = [m for m in heavy if m in sys.modules]
        await self.nc().flush()  # the heartbeat out of the client's buffer before the process ends
        sys.stderr.write("\\nLOADED " + json.dumps(loaded) + "\\n")
        sys.stderr.flush()
        os._exit(0)
    return sent
heartbeat.HeartbeatSender.send = first
from drover.cli.main import main
main(sys.argv[2:])
"""


def _containers(data: bytes) -> list[dict[str, object]]:
    body = msgpack.unpackb(data, raw=False)
    return [hbwire.decode_entry(e) for e in hbwire.entries(body["cs"])]


async def test_first_heartbeat_reports_the_running_container_before_heavy_imports(
    nats_server: NatsServer, docker_cleanup: str, busybox_image: str, tmp_path: Path
) -> None:
    cluster, node = docker_cleanup, "n1"
    driver = DockerDriver(cluster, node, pull=False)
    try:
        obs = await driver.create_and_start(replica("r1", command=["sleep", "300"]), "127.0.0.1")
    finally:
        await driver.close()
    assert obs.state == RUNNING
    nc = await nats.connect(nats_server.url)
    beats: list[bytes] = []

    async def on_beat(msg: object) -> None:
        beats.append(msg.data)  # type: ignore[attr-defined]

    await nc.subscribe(Names(cluster).heartbeat(node), cb=on_beat)
    await nc.flush()
    env = {**os.environ, "DROVER_HOME": str(tmp_path / "home")}
    args = ["agent", "--nats", nats_server.url, "--cluster", cluster, "--node", node, "--driver", "docker",
            "--address", "127.0.0.1", "--data-dir", str(tmp_path / "data"), "--log-level", "warning"]
    try:
        proc = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", PROBE, json.dumps(HEAVY), *args],
            capture_output=True, text=True, env=env, timeout=120,
        )
        marker = proc.stderr.rsplit("LOADED ", 1)
        assert len(marker) == 2, proc.stderr[-2000:]
        assert json.loads(marker[1].split("\n")[0]) == [], "imported before the first heartbeat"
        await wait_for(lambda: beats, 10, message="the first heartbeat never arrived")
        first = _containers(beats[0])
        assert [(c["id"], c["state"], c["container_id"]) for c in first] == [("r1", "running", obs.container_id)]
    finally:
        await nc.close()
