"""Heartbeats are dated by their send time: a real controller process on a real nats-server, SIGSTOPped while
one of two (test-played) agents dies. The dead agent's heartbeats queued in the paused controller's socket
must not make it look alive on resume: its last heartbeat stays before its death, and it goes lost."""

from __future__ import annotations

import signal
import time
from datetime import datetime
from typing import Any

from tests.fixtures import wait_for
from tests.integration.controller.test_stall import GRACE, cluster

__all__ = ["cluster"]


def _wall(text: str | None) -> float:
    assert text is not None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def _nodes(call: Any) -> dict[str, dict[str, Any]]:
    return {str(n["name"]): n for n in (await call("get_nodes")).data or []}


async def test_queued_heartbeats_of_an_agent_killed_during_a_pause_are_dated_before_its_death(
    cluster: Any,
) -> None:
    proc, agents, call = cluster
    await agents.add("n1")
    await agents.add("n2")

    async def both_ready() -> bool:
        nodes = await _nodes(call)
        return all(nodes.get(n, {}).get("status") == "ready" for n in ("n1", "n2"))

    await wait_for(both_ready, 30, message="both nodes ready", ignore=(Exception,))
    proc.send_signal(signal.SIGSTOP)
    try:
        paused = time.monotonic()
        # Both agents keep beating into the paused controller's socket for a while, then n1 dies.
        await wait_for(lambda: time.monotonic() - paused > 1.0, 10)
        agents.alive.discard("n1")
        died = time.time()
        await wait_for(lambda: time.monotonic() - paused > 1.0 + GRACE, 10)
    finally:
        proc.send_signal(signal.SIGCONT)
    resumed = time.time()

    async def n2_heard_after_resume() -> bool:
        hb = (await _nodes(call)).get("n2", {}).get("last_heartbeat")
        return hb is not None and _wall(hb) > resumed

    # n2 heard after the resume: everything queued during the pause has been read by now.
    await wait_for(n2_heard_after_resume, 20, message="n2 heard after the resume", ignore=(Exception,))
    n1 = (await _nodes(call))["n1"]
    # Dated by the time it was read, n1's last queued heartbeat would be >= ``resumed``, GRACE s after its death.
    assert _wall(n1["last_heartbeat"]) <= died + 0.3, (n1, died, resumed)

    async def n1_lost() -> bool:
        return (await _nodes(call))["n1"]["status"] == "lost"

    await wait_for(n1_lost, 20, message="n1 lost")
    assert (await _nodes(call))["n2"]["status"] == "ready"
