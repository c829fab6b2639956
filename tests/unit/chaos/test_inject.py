"""Fault targets: ``nats-kill`` hits one nats-server of several, never the only one."""

from __future__ import annotations

import asyncio
import random
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from drover.chaos.inject import Injector, NoTarget, Undo


def _injector(
    state: dict[str, Any], nats_current: Callable[[dict[str, Any]], Awaitable[bool]] | None = None
) -> Injector:
    async def leader() -> str | None:
        return None

    async def containers() -> list[tuple[str, str]]:
        return []

    async def docker_kill(_name: str) -> None:
        raise AssertionError("no container is killed here")

    return Injector(rng=random.Random(1), state=lambda: state, leader=leader, containers=containers,
                    docker_kill=docker_kill, undo=Undo(), tag="t", nats_current=nats_current)


def test_nats_kill_refuses_the_only_nats_server() -> None:
    gone = subprocess.Popen(["true"])  # a pid that no longer runs: nothing real is signalled if the check is wrong
    gone.wait()
    state = {"processes": [{"kind": "nats", "name": "nats-1", "pid": gone.pid}]}
    with pytest.raises(NoTarget, match="several"):
        asyncio.run(_injector(state).inject("nats-kill", 0.0))


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [subprocess.Popen(["sleep", "300"]) for _ in range(3)]  # stand-ins for the nats-servers
    yield procs
    for p in procs:
        p.kill()
        p.wait()


async def test_nats_kills_one_at_a_time_each_waiting_until_every_server_is_current(
    sleepers: list[subprocess.Popen[bytes]],
) -> None:
    """Two nats-kills due together: the second waits until the first one's server is current again (a
    second server down before that would take JetStream's quorum)."""
    state = {"processes": [{"kind": "nats", "name": f"nats-{i}", "pid": p.pid} for i, p in enumerate(sleepers)]}
    killed: list[str] = []
    caught_up = asyncio.Event()
    refused = asyncio.Event()

    async def current(server: dict[str, Any]) -> bool:
        ok = server["name"] not in killed or caught_up.is_set()
        if not ok:
            refused.set()
        return ok

    injector = _injector(state, current)

    async def kill() -> str:
        got = await injector.inject("nats-kill", 0.0)
        killed.append(got.target)
        return got.target

    first, second = asyncio.ensure_future(kill()), asyncio.ensure_future(kill())
    await asyncio.wait_for(asyncio.shield(first), 5)
    await asyncio.wait_for(refused.wait(), 5)  # the second saw a server not current yet…
    assert not second.done() and len(killed) == 1  # …and waits
    caught_up.set()
    await asyncio.wait_for(second, 5)
    assert len(killed) == 2
