"""Fencing across an agent restart: the agent keeps the highest controller term it accepted in its data dir
and, restarted, refuses an assignment of a lower term (written meanwhile by a deposed controller); a higher
term is taken. Real nats-server, real Docker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiodocker
import pytest

from drover.agent.fence import STATE_FILE, TermFile, incarnation
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


async def test_a_term_kept_for_another_cluster_incarnation_does_not_apply(
    nats_server_factory: Any, cluster_name: str, tmp_path: Path
) -> None:
    """NATS data wiped (a new store, a new cluster key): the new controllers count terms from 1 again, and the
    agent's kept term 8 must not refuse them."""
    data = tmp_path / "agent-s1"
    first = nats_server_factory("first")
    async with tap(first.url, cluster_name) as t, running_agent(first.url, cluster_name, "s1", driver="sim",
                                                                 data_dir=str(data)):
        await t.assign("s1", [replica("a1")], term=8)
        await wait_for(lambda: running(t.statuses("s1"), ["a1"]), 15)
    first.stop()
    fresh = nats_server_factory("fresh")  # another store: another cluster key
    async with tap(fresh.url, cluster_name) as t, running_agent(fresh.url, cluster_name, "s1", driver="sim",
                                                                 data_dir=str(data)) as agent:
        await t.assign("s1", [replica("b1")], term=1)
        await wait_for(lambda: running(t.statuses("s1"), ["b1"]), 15, message="term 1 of the new cluster taken")
        assert agent.gate.max_term == 1
        assert json.loads((data / STATE_FILE).read_text())["term"] == 1


def test_term_file_is_atomic_and_bounded(tmp_path: Path) -> None:
    f = TermFile(tmp_path / "a" / STATE_FILE)
    assert f.load() == 0
    f.save(42)
    assert f.load() == 42 and [p.name for p in (tmp_path / "a").iterdir()] == [STATE_FILE]
    for garbage in ("{", '{"term": "x"}', f'{{"term": {MAX_COUNTER + 1}}}', '{"term": -3}', "[]", '{"term": true}'):
        (tmp_path / "a" / STATE_FILE).write_text(garbage)
        assert f.load() == 0  # reported, never a wedge on a term no controller reaches
    assert TermFile(None).load() == 0
    f = TermFile(tmp_path / "b" / STATE_FILE)
    f.load(incarnation(b"k" * 32))
    f.save(5)
    assert f.load(incarnation(b"k" * 32)) == 5 and f.load(None) == 5
    assert f.load(incarnation(b"other" * 8)) == 0  # another incarnation of the cluster's store
