"""Helpers for the agent integration tests: assignments written straight to the KV, heartbeat/event taps."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client as NATS

from drover.agent.config import AgentConfig
from drover.agent.main import Agent
from drover.controller.heartbeats import HeartbeatIntake
from drover.shared import bus
from drover.shared.bus import ClusterStore
from drover.shared.models import AssignedContainer, Assignment, ContainerStatus, Event, Heartbeat
from drover.shared.subjects import Names

IMAGE = "local/busybox:latest"
HTTPD = ["httpd", "-f", "-p", "8080", "-h", "/www"]


def spec(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "image": IMAGE,
        "command": HTTPD,
        "env": {"GREETING": "hi"},
        "network": "bridge",
        "ports": [{"name": "http", "container": 8080, "expose": None}],
        "resources": {"cpu": 0.1, "memory": 32 * 1024 * 1024},
        "health": None,
        "restart": "always",
        "stop_grace": 1.0,
    }
    base.update(over)
    return base


def replica(rid: str, service: str = "web", revision: int = 1, **spec_over: Any) -> AssignedContainer:
    return AssignedContainer(id=rid, service=service, revision=revision, spec=spec(**spec_over))


@dataclass
class Tap:
    """Subscribes to a cluster's heartbeats and events."""

    nc: NATS
    store: ClusterStore
    names: Names
    heartbeats: dict[str, Heartbeat] = field(default_factory=dict)
    hb_count: dict[str, int] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    generation: int = 0

    async def assign(self, node: str, containers: list[AssignedContainer], term: int = 1) -> int:
        self.generation += 1
        a = Assignment(node=node, generation=self.generation, term=term, containers=containers)
        rev: int = await self.store.assignments.put(node, a.to_wire())
        return rev

    def statuses(self, node: str) -> dict[str, ContainerStatus]:
        hb = self.heartbeats.get(node)
        return {c.id: c for c in hb.containers} if hb else {}

    def events_of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


@contextlib.asynccontextmanager
async def tap(url: str, cluster: str) -> AsyncIterator[Tap]:
    nc = await bus.connect(url, name="test-tap")
    store = await bus.open_store(nc, cluster)
    names = Names(cluster)
    t = Tap(nc, store, names)

    def record(hb: Heartbeat, _now: float) -> bool:
        t.heartbeats[hb.node] = hb
        t.hb_count[hb.node] = t.hb_count.get(hb.node, 0) + 1
        return True

    intake = HeartbeatIntake(lambda _node, _now: False, record)  # every whole heartbeat is recorded

    async def on_hb(msg: Any) -> None:
        intake.feed(names.heartbeat_node(msg.subject) or "", msg.data, time.time())

    async def on_event(msg: Any) -> None:
        t.events.append(Event.from_wire(msg.data))

    await nc.subscribe(names.heartbeat_all, cb=on_hb)
    await nc.subscribe(names.events_all, cb=on_event)
    try:
        yield t
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def running_agent(url: str, cluster: str, node: str, **kw: Any) -> AsyncIterator[Agent]:
    cfg = AgentConfig(nats_url=url, node=node, cluster=cluster, heartbeat_interval=0.2, **kw)
    agent = Agent(cfg)
    await asyncio.wait_for(agent.start(), 30)
    try:
        yield agent
    finally:
        await agent.stop()


def running(statuses: dict[str, ContainerStatus], ids: list[str]) -> bool:
    return all(i in statuses and statuses[i].state == "running" and statuses[i].host_port for i in ids)


async def http_get(host: str, port: int, path: str = "/", timeout: float = 2.0) -> tuple[int, str]:
    """A tiny HTTP/1.0 GET (loopback only); (0, error) when the connection fails or is reset."""

    async def run() -> tuple[int, str]:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        data = await reader.read()
        writer.close()
        head, _, body = data.decode("latin-1").partition("\r\n\r\n")
        parts = head.split()
        return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), body

    try:
        return await asyncio.wait_for(run(), timeout)
    except (OSError, TimeoutError) as exc:
        return 0, repr(exc)
