"""Fencing across an agent restart: the agent keeps the highest controller term it accepted in its data dir
and, restarted, refuses an assignment of a lower term (written meanwhile by a deposed controller); a higher
term is taken. Real nats-server, real Docker."""

from __future__ import annotations

import json
from pathlib import Path

import aiodocker
import pytest

from drover.agent.fence import STATE_FILE, TermFile
from drover.shared.models import MAX_COUNTER
from tests.fixtures import wait_for
from tests.fixtures.nats import NatsServer
from tests.integration.agent_support import replica, running, running_agent, tap

pytestmark = [pytest.mark.docker, pytest.mark.nats]


async def test_restarted_agent_refuses_a_lower_term(
    nats_server: NatsServer, docker_client: aiodocker.Docker, docker_cleanup: str, busybox_image: str, tmp_path: Path
) -> None:
    cluster = docker_cleanup
    data = tmp_path / "agent-n1"
    async with tap(nats_server.url, cluster) as t:
        async with running_agent(nats_server.url, cluster, "n1", data_dir=str(data)):
            await t.assign("n1", [replica("k1")], term=7)
            await wait_for(lambda: running(t.statuses("n1"), ["k1"]), 20, message="k1 running")
            assert json.loads((data / STATE_FILE).read_text())["term"] == 7
        # While the agent is away a deposed controller (term 6) writes an assignment without k1.
        await t.assign("n1", [replica("old1")], term=6)
        t.heartbeats.clear()
        async with running_agent(nats_server.url, cluster, "n1", data_dir=str(data)) as agent:
            assert agent.gate.max_term == 7 and agent.assignment is None
            # The adopted k1 is reported and kept running; old1 is never created.
            await wait_for(lambda: t.hb_count.get("n1", 0) >= 1 and t.statuses("n1"), 10, message="heartbeat")
            seen = t.hb_count["n1"]
            await wait_for(lambda: t.hb_count["n1"] >= seen + 8, 15, message="heartbeats go on")
            assert set(t.statuses("n1")) == {"k1"} and t.statuses("n1")["k1"].state == "running"
            assert agent.gate.rejected >= 1
            # The current controller's term is taken at once.
            await t.assign("n1", [replica("k1"), replica("new1")], term=8)
            await wait_for(lambda: running(t.statuses("n1"), ["k1", "new1"]), 20, message="term 8 applied")
            assert json.loads((data / STATE_FILE).read_text())["term"] == 8


def test_term_file_is_atomic_and_bounded(tmp_path: Path) -> None:
    f = TermFile(tmp_path / "a" / STATE_FILE)
    assert f.load() == 0
    f.save(42)
    assert f.load() == 42 and [p.name for p in (tmp_path / "a").iterdir()] == [STATE_FILE]
    for garbage in ("{", '{"term": "x"}', f'{{"term": {MAX_COUNTER + 1}}}', '{"term": -3}', "[]", '{"term": true}'):
        (tmp_path / "a" / STATE_FILE).write_text(garbage)
        assert f.load() == 0  # reported, never a wedge on a term no controller reaches
    assert TermFile(None).load() == 0
