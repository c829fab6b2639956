"""Chaos faults on real processes: the iptables partition cuts exactly one client off a real nats-server
and heals; every fault is undone when a run stops (rules removed, stopped processes continued); rules
left by a dead chaos process are swept."""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from drover.chaos import iptables
from drover.chaos.inject import Injector, Undo
from drover.shared import bus
from tests.fixtures.nats import NatsServer
from tests.fixtures.wait import ticks, wait_for


def _our_rules(tag: str) -> list[str]:
    out = subprocess.run(["iptables", "-w", "5", "-S", iptables.CHAIN], capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if tag in line]


async def _round_trip(nc: NATS, timeout: float = 0.5) -> bool:
    try:
        await nc.flush(timeout=timeout)
    except Exception:
        return False
    return True


def _stopped(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("State:"):
            return "T" in line.split()[1]
    return False


@pytest.fixture
def sleeper() -> Any:
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


def _injector(state: dict[str, Any], undo: Undo, tag: str) -> Injector:
    async def no_leader() -> str | None:
        return None

    async def no_containers() -> list[tuple[str, str]]:
        return []

    async def no_kill(_: str) -> None:
        return None

    return Injector(
        rng=random.Random(1), state=lambda: state, leader=no_leader, containers=no_containers,
        docker_kill=no_kill, undo=undo, tag=tag,
    )


async def test_partition_cuts_only_that_agent_then_heals(nats_server: NatsServer) -> None:
    assert nats_server.port is not None
    cut = await bus.connect(nats_server.url, name="cut", source="127.0.1.201")
    other = await bus.connect(nats_server.url, name="other", source="127.0.1.202")
    tag = iptables.tag()
    state = {
        "processes": [
            {"kind": "nats", "name": "nats-1", "pid": 1, "port": nats_server.port},
            {"kind": "agent", "name": "agent-a", "pid": 1, "node": "a", "address": "127.0.0.1",
             "nats_source": "127.0.1.201"},
        ]
    }
    undo = Undo()
    try:
        assert await _round_trip(cut) and await _round_trip(other)
        got = await _injector(state, undo, tag).inject("partition", 5.0)
        assert (got.kind, got.target, got.cut_node) == ("partition", "a", "a")
        assert len(_our_rules(tag)) == 2
        assert not await _round_trip(cut, 1.0)  # cut: no answer from the server
        assert await _round_trip(other)  # the other client is not
        assert got.undo_key is not None
        await undo.run(got.undo_key)
        assert _our_rules(tag) == []
        await wait_for(lambda: _round_trip(cut), timeout=30, message="the partitioned client never recovered")
    finally:
        await undo.drain()
        await cut.close()
        await other.close()
    assert _our_rules(tag) == []


async def test_an_agents_connection_is_replaced_during_a_partition_and_heard_soon_after_the_heal(
    nats_server: NatsServer,
) -> None:
    """With the agents' fast pings a partitioned connection is found stale and replaced, so the client is
    heard again within moments of the heal; kept, it waited for TCP's backed-off retransmission (a 3.5 s cut
    was heard again 3.2 s after the heal)."""
    assert nats_server.port is not None
    source = "127.0.1.203"
    watcher = await bus.connect(nats_server.url, name="watcher")
    heard: list[float] = []

    async def on_beat(_msg: Any) -> None:
        heard.append(time.monotonic())

    await watcher.subscribe("beat", cb=on_beat)
    agent = await bus.connect(nats_server.url, name="agent", source=source, ping_interval=bus.FAST_PING_INTERVAL)

    async def beat() -> None:  # like the agent's heartbeats
        async for _ in ticks(0.2):
            with contextlib.suppress(Exception):
                await agent.publish("beat", b"1")

    beats = asyncio.ensure_future(beat())
    rules = iptables.nats_partition_rules(source, [nats_server.port], iptables.tag())
    try:
        await wait_for(lambda: len(heard) > 0, timeout=10, message="no beat heard before the cut")
        for rule in rules:
            await iptables.add(rule)
        # The cut holds until the client has found its connection dead (its fast pings unanswered).
        await wait_for(lambda: not agent.is_connected, timeout=15, message="the cut connection was never noticed")
        for rule in rules:
            await iptables.delete(rule)
        healed = time.monotonic()
        # Heard alone proves little: the closed connection's unacknowledged bytes are still retransmitted by the
        # kernel after the heal. The stale connection must be replaced, and the client heard on the new one.
        await wait_for(lambda: agent.stats["reconnects"] >= 1 and agent.is_connected, timeout=30,
                       message="the stale connection was never replaced")
        back = time.monotonic()
        await wait_for(lambda: any(t > back for t in heard), timeout=10, message="never heard on the new connection")
        assert back - healed < 2.5
    finally:
        beats.cancel()
        for rule in rules:
            with contextlib.suppress(RuntimeError):
                await iptables.delete(rule)
        for nc in (agent, watcher):
            with contextlib.suppress(Exception):
                await nc.close()


async def test_every_fault_is_undone_when_the_run_stops(sleeper: subprocess.Popen[bytes]) -> None:
    """Held faults (a pause, two partitions) cancelled midway — as on SIGINT — leave nothing behind."""
    tag = f"{iptables.TAG_PREFIX}{sleeper.pid}"  # a live "owner", so a concurrent sweep leaves it alone
    state = {
        "processes": [
            {"kind": "nats", "name": "nats-1", "pid": 1, "port": 1},
            {"kind": "controller", "name": "controller-1", "pid": sleeper.pid, "id": "c1"},
            {"kind": "agent", "name": "agent-a", "pid": 1, "node": "a", "address": "127.0.0.2",
             "nats_source": "127.0.1.2"},
            {"kind": "agent", "name": "agent-b", "pid": 1, "node": "b", "address": "127.0.0.3",
             "nats_source": "127.0.1.3"},
        ]
    }
    undo = Undo()
    injector = _injector(state, undo, tag)

    async def run() -> None:
        for kind in ("pause", "partition", "gossip-partition"):
            await injector.inject(kind, 30.0)
        await asyncio.Event().wait()  # interrupted here, with three faults held

    task = asyncio.ensure_future(run())
    await wait_for(lambda: len(_our_rules(tag)) == 4, timeout=20, message="the partitions were not all in place")
    assert len(undo) == 3 and _stopped(sleeper.pid)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await undo.drain()
    assert _our_rules(tag) == []
    assert not _stopped(sleeper.pid)
    assert undo.errors == []


async def test_rules_of_a_dead_chaos_process_are_swept() -> None:
    dead = await asyncio.create_subprocess_exec("true")
    await dead.wait()
    tag = f"{iptables.TAG_PREFIX}{dead.pid}"
    [rule, _] = iptables.gossip_partition_rules("127.0.0.250", "127.0.0.251", tag)
    await iptables.add(rule)
    try:
        assert len(_our_rules(tag)) == 1
        assert await iptables.sweep_stale() >= 1
        assert _our_rules(tag) == []
    finally:
        if _our_rules(tag):
            await iptables.delete(rule)


def test_stale_rules_parse_iptables_listing() -> None:
    listing = (
        "-P INPUT ACCEPT\n"
        "-A INPUT -s 127.0.1.2/32 -d 127.0.0.1/32 -p tcp -m multiport --dports 4222 "
        "-m comment --comment drover-chaos-17 -j DROP\n"
        "-A INPUT -s 127.0.0.2/32 -p udp -m comment --comment \"drover-chaos-18\" -j DROP\n"
        "-A INPUT -p udp -m comment --comment other -j DROP\n"
    )
    assert iptables.stale_rules(listing, alive={18}) == [
        ["INPUT", "-s", "127.0.1.2/32", "-d", "127.0.0.1/32", "-p", "tcp", "-m", "multiport", "--dports", "4222",
         "-m", "comment", "--comment", "drover-chaos-17", "-j", "DROP"]
    ]
    assert len(iptables.stale_rules(listing, alive=set())) == 2
