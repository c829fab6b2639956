"""Fault targets: ``nats-kill`` hits one nats-server of several, never the only one."""

from __future__ import annotations

import asyncio
import random
import subprocess
from typing import Any

import pytest

from drover.chaos.inject import Injector, NoTarget, Undo


def _injector(state: dict[str, Any]) -> Injector:
    async def leader() -> str | None:
        return None

    async def containers() -> list[tuple[str, str]]:
        return []

    async def docker_kill(_name: str) -> None:
        raise AssertionError("no container is killed here")

    return Injector(rng=random.Random(1), state=lambda: state, leader=leader, containers=containers,
                    docker_kill=docker_kill, undo=Undo(), tag="t")


def test_nats_kill_refuses_the_only_nats_server() -> None:
    gone = subprocess.Popen(["true"])  # a pid that no longer runs: nothing real is signalled if the check is wrong
    gone.wait()
    state = {"processes": [{"kind": "nats", "name": "nats-1", "pid": gone.pid}]}
    with pytest.raises(NoTarget, match="several"):
        asyncio.run(_injector(state).inject("nats-kill", 0.0))
