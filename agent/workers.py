"""Per-replica workers (as kubelet's pod workers): the actions of one replica run in order in that replica's
own task, and replicas never wait on each other — a slow image pull or a long ``stop_grace`` holds up only
its own replica, never another service's restart.

The reconcile pass stays level-triggered and pure (``reconcile.plan``): it hands each pass's actions to
``dispatch``, which starts a worker for every replica that has none running and drops the actions of a
replica whose worker is still busy (the pass after that worker finishes plans them again, from what is
then observed). A finished worker asks for a new pass (``on_done``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from drover.agent.reconcile import Action

Spawn = Callable[[str, Coroutine[Any, Any, None]], asyncio.Task[Any]]
RunGroup = Callable[[list[Action]], Awaitable[None]]


class ReplicaWorkers:
    def __init__(self, spawn: Spawn, on_done: Callable[[], None]) -> None:
        self._spawn = spawn
        self._on_done = on_done
        self._running: dict[str, asyncio.Task[Any]] = {}

    def busy(self, replica_id: str) -> bool:
        return replica_id in self._running

    @property
    def active(self) -> int:
        return len(self._running)

    def dispatch(self, actions: Sequence[Action], run: RunGroup) -> list[str]:
        """Start ``run(group)`` for each replica's actions (in plan order) unless that replica's worker is
        still busy; the replica ids started."""
        groups: dict[str, list[Action]] = {}
        for a in actions:
            groups.setdefault(a.id, []).append(a)
        started: list[str] = []
        for rid, group in groups.items():
            if rid in self._running:
                continue
            self._running[rid] = self._spawn(f"replica:{rid}", self._work(rid, group, run))
            started.append(rid)
        return started

    async def _work(self, rid: str, group: list[Action], run: RunGroup) -> None:
        try:
            await run(group)
        finally:
            self._running.pop(rid, None)
            self._on_done()
