"""ReplicaWorkers: one worker per replica, actions in plan order, a busy replica's new actions dropped (the
next pass plans them again), a slow replica never holds up another, a finished worker asks for a pass."""

from __future__ import annotations

import asyncio
from typing import Any

from drover.agent.reconcile import Action, Remove, Start, Stop
from drover.agent.workers import ReplicaWorkers
from tests.fixtures import wait_for


async def test_replicas_run_independently_and_in_order() -> None:
    done: list[str] = []
    passes: list[int] = []
    gate = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []

    def spawn(name: str, coro: Any) -> asyncio.Task[Any]:
        t = asyncio.get_running_loop().create_task(coro, name=name)
        tasks.append(t)
        return t

    workers = ReplicaWorkers(spawn, on_done=lambda: passes.append(1))

    async def run(group: list[Action]) -> None:
        for a in group:
            if a.id == "slow":
                await gate.wait()  # a stop with a long grace
            done.append(f"{a.kind}:{a.id}")

    first = [Stop("slow", "c1", 30.0), Remove("slow", "c1"), Start("fast", "c2")]
    assert workers.dispatch(first, run) == ["slow", "fast"]
    await wait_for(lambda: "start:fast" in done, 5, message="fast ran while slow waits")
    assert workers.busy("slow") and not workers.busy("fast") and passes == [1]
    # The next pass plans slow again: dropped while its worker is busy; fast gets a new worker.
    assert workers.dispatch([Stop("slow", "c1", 30.0), Start("fast", "c3")], run) == ["fast"]
    await wait_for(lambda: done.count("start:fast") == 2, 5)
    gate.set()
    await wait_for(lambda: not workers.busy("slow"), 5)
    assert [d for d in done if d.endswith("slow")] == ["stop:slow", "remove:slow"]  # in order, once
    assert workers.active == 0 and len(passes) == 3
    await asyncio.gather(*tasks)
