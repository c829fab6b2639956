"""Injecting the faults into a ``drover up`` lab, and undoing them.

Each injection returns what it did (kind, target, the node it cut off if any) and registers its undo in
:class:`Undo`, which the runner always drains — at the planned heal time, at the end, or on SIGINT — so
no iptables rule stays and no process stays stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from drover.chaos import iptables
from drover.chaos.probe import http_ok
from drover.shared.aio import uncancellable

Undoer = Callable[[], Awaitable[None]]
NATS_CURRENT_WAIT = 20.0  # s a nats-kill waits for every server to be current again (/healthz)


class NoTarget(Exception):
    """The lab has nothing this fault can hit right now (e.g. one nats-server, one agent)."""


@dataclass
class Injected:
    kind: str
    target: str
    cut_node: str | None = None  # a node cut off from the cluster by this fault (agent-kill, partition)
    undo_key: int | None = None


class Undo:
    """Pending undos by key; ``run(key)`` heals one fault, ``drain()`` heals them all (never raising)."""

    def __init__(self) -> None:
        self._pending: dict[int, tuple[str, Undoer]] = {}
        self._next = 0
        self.errors: list[str] = []

    def add(self, what: str, fn: Undoer) -> int:
        self._next += 1
        self._pending[self._next] = (what, fn)
        return self._next

    def __len__(self) -> int:
        return len(self._pending)

    async def run(self, key: int) -> None:
        item = self._pending.pop(key, None)
        if item is None:
            return
        what, fn = item
        try:
            await fn()
        except Exception as exc:  # keep healing the others; the summary says what failed
            self.errors.append(f"undo {what}: {exc}")

    async def drain(self) -> None:
        for key in list(self._pending):
            await asyncio.shield(self.run(key))


def _procs(state: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [p for p in state.get("processes", []) if p.get("kind") == kind and isinstance(p.get("pid"), int)]


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


class Injector:
    """Faults against one lab. ``state`` reads the lab's current ``lab.json`` (pids change on restarts);
    ``leader`` asks the cluster for the leading controller's id; ``containers`` lists the running
    replicas of the chaos service as (name, id) and ``docker_kill`` kills one."""

    def __init__(
        self,
        *,
        rng: random.Random,
        state: Callable[[], dict[str, Any]],
        leader: Callable[[], Awaitable[str | None]],
        containers: Callable[[], Awaitable[list[tuple[str, str]]]],
        docker_kill: Callable[[str], Awaitable[None]],
        undo: Undo,
        tag: str,
        nats_current: Callable[[dict[str, Any]], Awaitable[bool]] | None = None,
    ) -> None:
        self.rng = rng
        self.state = state
        self.leader = leader
        self.containers = containers
        self.docker_kill = docker_kill
        self.undo = undo
        self.tag = tag
        self.nats_current = nats_current or _nats_healthz
        self.busy: set[str] = set()  # targets under a held fault: not hit twice at once
        self._one_nats_kill = asyncio.Lock()  # one nats-kill at a time: the next waits for the servers to catch up

    def _pick(self, items: list[dict[str, Any]], key: str) -> dict[str, Any]:
        free = [p for p in items if str(p.get(key)) not in self.busy] or items
        if not free:
            raise NoTarget(f"no {key} to hit")
        return self.rng.choice(sorted(free, key=lambda p: str(p.get(key))))

    async def _leader_proc(self) -> dict[str, Any]:
        ctls = _procs(self.state(), "controller")
        if not ctls:
            raise NoTarget("no controller process")
        ident = await self.leader()
        for p in ctls:
            if ident is not None and p.get("id") == ident:
                return p
        return self._pick(ctls, "name")  # no leader known right now: any controller

    async def inject(self, kind: str, hold: float) -> Injected:
        handler = getattr(self, "_" + kind.replace("-", "_"))
        result: Injected = await handler(hold)
        return result

    async def _agent_kill(self, _hold: float) -> Injected:
        p = self._pick(_procs(self.state(), "agent"), "node")
        _kill(p["pid"], signal.SIGKILL)
        return Injected("agent-kill", str(p["node"]), cut_node=str(p["node"]))

    async def _controller_kill(self, _hold: float) -> Injected:
        p = await self._leader_proc()
        _kill(p["pid"], signal.SIGKILL)
        return Injected("controller-kill", str(p.get("id") or p["name"]))

    async def _nats_kill(self, _hold: float) -> Injected:
        async with self._one_nats_kill:
            return await self._nats_kill_one()

    async def _nats_kill_one(self) -> Injected:
        servers = _procs(self.state(), "nats")
        if len(servers) < 2:
            # One nats-server "of several" only: killing the only one can drop writes it has acknowledged but
            # not yet flushed, which would be reported as lost desired state.
            raise NoTarget("nats-kill needs several nats-servers (drover up --nats-servers 3)")
        # "One of several" means one down at a time: a server killed a few seconds after another, before that
        # one has caught up, takes JetStream's quorum (every stream stalls until both are back). So wait until
        # every server reports itself current.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + NATS_CURRENT_WAIT
        while not all(await asyncio.gather(*(self.nats_current(s) for s in servers))):
            if loop.time() >= deadline:
                raise NoTarget(f"nats-servers not all current within {NATS_CURRENT_WAIT:g}s: a kill would take quorum")
            await asyncio.sleep(0.5)
            servers = _procs(self.state(), "nats")
        p = self._pick(servers, "name")
        _kill(p["pid"], signal.SIGKILL)
        return Injected("nats-kill", str(p["name"]))

    async def _container_kill(self, _hold: float) -> Injected:
        running = await self.containers()
        if not running:
            raise NoTarget("no running replica")
        name, ident = self.rng.choice(sorted(running))
        await self.docker_kill(ident)
        return Injected("container-kill", name)

    async def _pause(self, _hold: float) -> Injected:
        p = await self._leader_proc()
        pid = int(p["pid"])
        target = str(p.get("id") or p["name"])
        self.busy.add(target)

        async def cont() -> None:
            self.busy.discard(target)
            _kill(pid, signal.SIGCONT)

        key = self.undo.add(f"pause of {target}", cont)  # registered before the stop: never left stopped
        _kill(pid, signal.SIGSTOP)
        return Injected("pause", target, undo_key=key)

    async def _partition(self, _hold: float) -> Injected:
        state = self.state()
        p = self._pick([a for a in _procs(state, "agent") if a.get("nats_source")], "node")
        ports = [int(n["port"]) for n in _procs(state, "nats")]
        if not ports:
            raise NoTarget("no nats-server in the lab state")
        rules = iptables.nats_partition_rules(str(p["nats_source"]), ports, self.tag)
        node = str(p["node"])
        return await self._held_rules("partition", node, rules, node)

    async def _gossip_partition(self, _hold: float) -> Injected:
        agents = sorted(_procs(self.state(), "agent"), key=lambda a: str(a["node"]))
        if len(agents) < 2:
            raise NoTarget("gossip-partition needs two agents")
        a, b = self.rng.sample(agents, 2)
        rules = iptables.gossip_partition_rules(str(a["address"]), str(b["address"]), self.tag)
        return await self._held_rules("gossip-partition", f"{a['node']}<->{b['node']}", rules, None)

    async def _held_rules(self, kind: str, target: str, rules: list[list[str]], cut: str | None) -> Injected:
        self.busy.add(target)
        added: list[list[str]] = []

        async def heal() -> None:
            self.busy.discard(target)
            problems = []
            for rule in added:
                try:
                    await iptables.delete(rule)
                except RuntimeError as exc:
                    if "matching rule" not in str(exc):  # a rule whose add never happened is fine
                        problems.append(str(exc))
            added.clear()
            if problems:
                raise RuntimeError("; ".join(problems))

        key = self.undo.add(f"{kind} of {target}", heal)
        try:
            for rule in rules:
                added.append(rule)  # before the add: a cancellation during it still heals this rule
                await uncancellable(iptables.add(rule), "iptables-add")
        except BaseException:
            await self.undo.run(key)
            raise
        return Injected(kind, target, cut_node=cut, undo_key=key)


async def _nats_healthz(server: dict[str, Any]) -> bool:
    """A lab nats-server is current when its /healthz answers 200 (JetStream caught up with its peers); a
    lab without monitoring ports cannot tell and counts as current."""
    port = server.get("monitor_port")
    if not isinstance(port, int) or port <= 0:
        return True
    return await http_ok("127.0.0.1", port, timeout=2.0, path="/healthz")


__all__ = ["Injected", "Injector", "NoTarget", "Undo"]
