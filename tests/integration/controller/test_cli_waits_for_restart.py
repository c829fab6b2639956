"""The CLI rides out its only controller's restart: a real nats-server, no controller subscribed when the
real CLI asks ("no responders"), one started a moment later (as ``drover up`` restarts a dead one about
1 s after it died): the command still succeeds, within its request budget. With no controller at all it
still exits 1 with "no responders", within that budget."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures.nats import NatsServer
from tests.integration.controller.test_stall import _stop

DROVER = str(Path(sys.executable).parent / "drover")


def _cli(url: str, cluster: str, home: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DROVER_HOME": str(home), "DROVER_NATS": url, "DROVER_CLUSTER": cluster}
    return subprocess.Popen(
        [DROVER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=home
    )


async def test_a_command_sent_while_the_only_controller_restarts_succeeds(
    nats_server: NatsServer, cluster_name: str, tmp_path: Path
) -> None:
    began = time.monotonic()
    cli = _cli(nats_server.url, cluster_name, tmp_path, "get", "nodes", "-o", "json")
    log = (tmp_path / "controller.log").open("wb")
    controller = await asyncio.to_thread(
        subprocess.Popen,
        [DROVER, "controller", "--nats", nats_server.url, "--cluster", cluster_name],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "DROVER_HOME": str(tmp_path)},
    )
    try:
        out, err = await asyncio.to_thread(cli.communicate, timeout=30)
        assert cli.returncode == 0, err
        assert out.strip().startswith("[")
        assert time.monotonic() - began < 10 + 3  # the request budget, and the CLI's start
    finally:
        await asyncio.to_thread(_stop, controller)
        log.close()


async def test_no_controller_at_all_is_still_exit_1_within_the_budget(
    nats_server: NatsServer, cluster_name: str, tmp_path: Path
) -> None:
    began = time.monotonic()
    cli = _cli(nats_server.url, cluster_name, tmp_path, "get", "nodes")
    _, err = await asyncio.to_thread(cli.communicate, timeout=30)
    assert cli.returncode == 1
    assert "no responders" in err and err.count("\n") == 1
    assert time.monotonic() - began < 10 + 3
