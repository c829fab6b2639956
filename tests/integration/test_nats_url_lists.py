"""Comma-separated NATS URL lists (``--nats``, ``DROVER_NATS``, the context file) on a real nats-server:
a daemon or a client whose list starts with a dead server still gets in; a client that reaches no server
of its list exits 1 within 10 s."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drover.controller.config import ControllerConfig
from drover.controller.main import Controller
from drover.shared.models import NodeRegistration
from tests.fixtures import wait_for
from tests.fixtures.nats import NatsServer
from tests.fixtures.net import free_tcp_port
from tests.integration.agent_support import running_agent, tap

pytestmark = [pytest.mark.nats]


def dead_url() -> str:
    return f"nats://127.0.0.1:{free_tcp_port()}"


class SilentServer:
    """Accepts TCP connections and never says a word: a hung server, the slow way to fail a connect."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    s = SilentServer()
    yield s
    s.close()


def drover(*args: str, env: dict[str, str], timeout: float = 30) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "drover", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    return proc, time.monotonic() - start


def client_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROVER_")}
    env["DROVER_HOME"] = str(tmp_path / "home")
    env.update(extra)
    return env


async def test_agent_and_controller_join_when_the_first_server_is_dead(
    nats_server: NatsServer, cluster_name: str, tmp_path: Path
) -> None:
    urls = f"{dead_url()},{nats_server.url}"
    ctl = Controller(ControllerConfig(nats_url=urls, cluster=cluster_name))
    await asyncio.wait_for(ctl.start(), 30)
    try:
        async with tap(nats_server.url, cluster_name) as t, running_agent(urls, cluster_name, "u1", driver="sim"):
            entry = await t.store.nodes.get("u1")
            assert NodeRegistration.from_wire(entry.value).name == "u1"
            await wait_for(lambda: "u1" in t.heartbeats, 10, message="the agent's heartbeats arrive")

            # every client-side way of naming the list: --nats, DROVER_NATS, the context file
            env = client_env(tmp_path)
            loop = asyncio.get_running_loop()
            proc, _ = await loop.run_in_executor(
                None, lambda: drover("get", "nodes", "--nats", urls, "--cluster", cluster_name, env=env)
            )
            assert proc.returncode == 0 and "u1" in proc.stdout, proc.stderr
            env_var = client_env(tmp_path, DROVER_NATS=urls, DROVER_CLUSTER=cluster_name)
            proc, _ = await loop.run_in_executor(None, lambda: drover("get", "nodes", env=env_var))
            assert proc.returncode == 0 and "u1" in proc.stdout, proc.stderr
            home = tmp_path / "home"
            home.mkdir(exist_ok=True)
            (home / "context.json").write_text(json.dumps({"nats": urls, "cluster": cluster_name}))
            proc, _ = await loop.run_in_executor(None, lambda: drover("get", "nodes", env=env))
            assert proc.returncode == 0 and "u1" in proc.stdout, proc.stderr
    finally:
        await ctl.stop()


@pytest.mark.parametrize("how", ["flag", "env", "context"])
def test_client_that_reaches_no_server_of_its_list_exits_1_within_10s(
    tmp_path: Path, silent: SilentServer, how: str
) -> None:
    urls = f"{dead_url()},{silent.url},{dead_url()}"
    env = client_env(tmp_path)
    args = ["get", "services"]
    if how == "flag":
        args += ["--nats", urls]
    elif how == "env":
        env["DROVER_NATS"] = urls
    else:
        (tmp_path / "home").mkdir()
        (tmp_path / "home" / "context.json").write_text(json.dumps({"nats": urls}))
    proc, took = drover(*args, env=env)
    assert proc.returncode == 1, proc.stderr
    assert took < 10, took
    assert proc.stderr.startswith("error: cannot reach the drover cluster at nats://127.0.0.1:"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_daemon_rejects_an_empty_url_list(tmp_path: Path) -> None:
    proc, _ = drover("agent", "--nats", " , ", "--node", "x", env=client_env(tmp_path))
    assert proc.returncode == 2 and "no NATS URL given" in proc.stderr and "Traceback" not in proc.stderr
