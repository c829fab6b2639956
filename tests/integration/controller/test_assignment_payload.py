"""On a real nats-server configured as drover's (max_payload 8 MiB): four services whose specs are near the
largest allowed, all constrained to one node, never make an assignment the server refuses. Three run there;
the fourth is unplaced with a reason saying why (before, the node's assignment of all four was refused and
retried every pass, and none ran)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from drover.shared.limits import MAX_SPEC_BYTES, NATS_MAX_PAYLOAD
from drover.shared.models import Assignment
from tests.fixtures import wait_for
from tests.fixtures.nats import NatsServer
from tests.integration.controller.test_controller import FakeAgents, controller_env, manifest

pytestmark = pytest.mark.nats

# ~2 MiB once encoded (what a 1 MiB manifest file may say): three fit in one 8 MiB message, four do not.
BIG_ENV = {f"K{i}": "x" * 4180 for i in range(MAX_SPEC_BYTES // 4194)}


@pytest.fixture
async def env(
    nats_server_factory: Callable[..., NatsServer], tmp_path: Path, cluster_name: str
) -> AsyncIterator[tuple[FakeAgents, Any]]:
    conf = tmp_path / "payload.conf"
    conf.write_text(f"max_payload: {NATS_MAX_PAYLOAD}\n")
    server = nats_server_factory("big", extra_args=["-c", str(conf)])
    async with controller_env(server.url, cluster_name, node_grace=3.0, call_timeout=20.0) as (_, agents, call):
        yield agents, call


async def test_a_node_assignment_stays_within_max_payload(env: tuple[FakeAgents, Any]) -> None:
    agents, call = env
    await agents.add("n1", cpu=8.0)
    await agents.add("n2", cpu=8.0)
    names = [f"big{i}" for i in range(4)]
    for name in names:
        m = manifest(name, replicas=1, env=BIG_ENV, placement={"constraints": ["node.name == n1"]})
        reply = await call("apply", manifests=[m])
        assert reply.ok, reply.error

    async def three_run_and_one_waits() -> bool:
        rows = {r["name"]: r for r in (await call("get_services")).data}
        running = sorted(n for n in names if rows[n]["running"] == 1)
        waiting = [n for n in names if rows[n]["running"] == 0]
        return len(running) == 3 and len(waiting) == 1 and "assignment over max_payload" in str(rows[waiting[0]])

    await wait_for(three_run_and_one_waits, 30, message="three big services run on n1, the fourth is unplaced")
    stored = await agents.store.assignments.get("n1")
    assert len(stored.value) <= NATS_MAX_PAYLOAD
    assert len(Assignment.from_wire(stored.value).containers) == 3


async def test_the_bound_is_the_connected_server_max_payload(plain: tuple[FakeAgents, Any]) -> None:
    """On a server left at nats-server's default (1 MiB), four ~300 KiB specs do not fit one assignment."""
    agents, call = plain
    await agents.add("n1", cpu=8.0)
    names = [f"mid{i}" for i in range(4)]
    env = {f"K{i}": "x" * 4000 for i in range(75)}  # ~300 KiB: a record (spec and history) within 1 MiB
    for name in names:
        reply = await call("apply", manifests=[manifest(name, replicas=1, env=env)])
        assert reply.ok, reply.error

    async def three_run_and_one_waits() -> bool:
        rows = {r["name"]: r for r in (await call("get_services")).data}
        waiting = [n for n in names if rows[n]["running"] == 0]
        return len(waiting) == 1 and "assignment over max_payload" in str(rows[waiting[0]])

    await wait_for(three_run_and_one_waits, 30, message="three services run on n1, the fourth is unplaced")
    stored = await agents.store.assignments.get("n1")
    assert len(stored.value) <= 1024 * 1024 and len(Assignment.from_wire(stored.value).containers) == 3


@pytest.fixture
async def plain(nats_server: NatsServer, cluster_name: str) -> AsyncIterator[tuple[FakeAgents, Any]]:
    async with controller_env(nats_server.url, cluster_name, node_grace=3.0, call_timeout=20.0) as (_, agents, call):
        yield agents, call
