"""A fleet of hollow agents in one process: ``drover agent --driver sim --count N --node-prefix P``.

Nodes ``P-1`` … ``P-N`` behave like real agents on the bus — each puts its ``NodeRegistration``, takes its
assignment (fenced by controller term through the same ``AssignmentGate``), publishes a ``Heartbeat`` on its
own subject ``drover.<cluster>.hb.<node>`` every second and at once when its containers change, and sends
``started`` events — but run no containers: a replica turns running ``start_delay`` after it was assigned
(``agent/hollow.py``). What a thousand agents would each do on their own is shared:

- one NATS connection for the whole fleet;
- one watch of its own nodes' assignment keys (one consumer filtered on all of them, ``shared/keyswatch.py``:
  the server sends nothing about other nodes), routed to the nodes by key (instead of one watch per node);
- one ticker that staggers the nodes' heartbeats over the interval and sends a node's heartbeat early when
  its containers changed (no task per node);
- heartbeats are encoded from cached, packed entries (no model building or packing per second), in parts
  of at most the server's ``max_payload`` (``shared/hbwire.py``) however many replicas a node has.

Heartbeats stay one message (or a few parts) per node, on the fleet subject
``drover.<cluster>.fleet.<prefix>.hb.<node>``, and registrations are asked of the controllers on
``….fleet.<prefix>.register.<node>``: NATS publish permissions bind a fleet's credentials (``drover
credentials agent 'P-*'``) to its prefix token, and the controllers take only nodes named ``<prefix>-…`` from
those subjects.

"Die when told": a request on ``drover.<cluster>.fleet.<prefix>.die.<node>`` makes that node stop at once — no more
heartbeats or assignment handling, its registration left behind — as a crashed host would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from drover.agent.assignment import AssignmentGate
from drover.agent.config import AgentConfig
from drover.agent.heartbeat import WARN_EVERY, publish_parts
from drover.agent.hollow import HollowState, converge, next_periodic_beat, promote
from drover.agent.membership import node_registration
from drover.shared import bus, hbwire, wire
from drover.shared.bus import ClusterStore
from drover.shared.errors import WireError
from drover.shared.keyswatch import watch_keys
from drover.shared.log import Throttled
from drover.shared.loopwatch import watch_loop
from drover.shared.models import AssignedContainer, Event
from drover.shared.subjects import Names
from drover.shared.tasks import Supervisor

log = structlog.get_logger("drover.fleet")

REGISTER_CONCURRENCY = 64  # KV puts in flight while the fleet registers


@dataclass
class FleetConfig:
    nats_url: str
    prefix: str
    count: int
    cluster: str = "default"
    creds: str | None = None  # NATS credentials: admin, or 'drover credentials agent "P-*"'; None: anonymous
    ca: str | None = None  # the cluster CA (PEM): TLS to NATS
    address: str = "127.0.0.1"
    labels: dict[str, str] = field(default_factory=dict)
    cpu: float | None = None  # per node; the host's when None
    memory: int | None = None
    start_delay: float = 0.0  # seconds from assignment to running
    heartbeat_interval: float = 1.0
    tick: float = 0.05  # how often the ticker looks for due heartbeats and starts

    def node_names(self) -> list[str]:
        return [f"{self.prefix}-{i}" for i in range(1, self.count + 1)]


class HollowNode:
    def __init__(self, cfg: AgentConfig, offset: float):
        self.cfg = cfg
        self.name = cfg.node
        self.boot_id = uuid.uuid4().hex
        self.gate = AssignmentGate(cfg.node)
        self.state = HollowState()
        self.wanted: dict[str, AssignedContainer] = {}
        self.seq = 0
        self.next_beat = offset  # monotonic time of the next periodic heartbeat
        self.changed = True
        self.alive = True

    def heartbeat(self, now: float, limit: int) -> list[bytes]:
        """This node's heartbeat, in parts of at most ``limit`` bytes (``shared/hbwire.py``)."""
        self.seq += 1
        a = self.gate.current
        head = {"node": self.name, "boot_id": self.boot_id, "seq": self.seq, "time": now,
                "generation": a.generation if a is not None else 0, "service_rps": {}}
        return hbwire.split(head, self.state.entries(), limit)


class HollowFleet:
    def __init__(self, cfg: FleetConfig):
        self.cfg = cfg
        self.names = Names(cfg.cluster)
        self.nodes: dict[str, HollowNode] = {}
        self.nc: NATS | None = None
        self.store: ClusterStore | None = None
        self.sup: Supervisor | None = None
        self.heartbeats_sent = 0
        self._wake = asyncio.Event()
        self.log = log.bind(prefix=cfg.prefix, count=cfg.count)
        self._warning = Throttled(self.log, WARN_EVERY)  # a heartbeat that could not be sent: once a minute

    async def start(self) -> None:
        self.sup = Supervisor(f"fleet-{self.cfg.prefix}")
        self.nc = await bus.connect(
            self.cfg.nats_url, name=f"drover-fleet-{self.cfg.prefix}", retry_forever=True, creds=self.cfg.creds,
            ca=self.cfg.ca,
        )
        self.store = await bus.open_store(self.nc, self.cfg.cluster)
        base = AgentConfig(nats_url=self.cfg.nats_url, node=self.cfg.prefix, cpu=self.cfg.cpu, memory=self.cfg.memory)
        start = time.monotonic()
        n = max(1, self.cfg.count)
        for i, name in enumerate(self.cfg.node_names()):
            cfg = AgentConfig(
                nats_url=self.cfg.nats_url, node=name, cluster=self.cfg.cluster, address=self.cfg.address,
                labels=dict(self.cfg.labels), driver="sim", cpu=base.cpu, memory=base.memory,
            )
            self.nodes[name] = HollowNode(cfg, start + self.cfg.heartbeat_interval * i / n)
        await self._register_all()
        await self.nc.subscribe(self.names.fleet(self.cfg.prefix, "die", "*"), cb=self._on_die)
        loaded = asyncio.Event()
        self.sup.start("watch", lambda: self._watch(loaded))
        await asyncio.wait_for(loaded.wait(), 60)
        self.sup.start("ticker", self._ticker)
        # A thousand nodes' state is big and long-lived: keep full collections from delaying heartbeats.
        self.sup.start("loop-watch", lambda: watch_loop(lambda _lag: None, warn_after=0.5, log=self.log))
        self.log.info("hollow fleet started", first=f"{self.cfg.prefix}-1", last=f"{self.cfg.prefix}-{self.cfg.count}")

    async def stop(self) -> None:
        if self.sup is not None:
            await self.sup.stop()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), 5)
            self.nc = None
        self.log.info("hollow fleet stopped")

    # --- registration and assignments ---------------------------------------------------------------------
    async def _register_all(self) -> None:
        """Each node's registration, through a controller (``controller/fleetintake.py``: a fleet's
        credentials cannot write the nodes bucket); asked again until a controller has stored it."""
        nc = self.nc
        assert nc is not None
        limit = asyncio.Semaphore(REGISTER_CONCURRENCY)

        async def register(node: HollowNode) -> None:
            data = node_registration(node.cfg, "sim", node.boot_id, 0, time.time()).to_wire()
            subject = self.names.fleet(self.cfg.prefix, "register", node.name)
            wait = 0.2
            while True:
                try:
                    async with limit:
                        reply = wire.decode((await nc.request(subject, data, timeout=5.0)).data)
                    if reply.get("ok"):
                        return
                    self.log.warning("registration refused", node=node.name, error=reply.get("error"))
                except Exception as exc:  # no controller yet, or a timeout: ask again
                    self.log.debug("registration not answered; asking again", node=node.name, error=repr(exc))
                await asyncio.sleep(wait)
                wait = min(wait * 2, 1.0)

        await asyncio.gather(*(register(node) for node in self.nodes.values()))

    async def _watch(self, loaded: asyncio.Event) -> None:
        """One watch of our nodes' assignment keys; each entry goes to the node it names."""
        assert self.store is not None
        watcher = await watch_keys(self.store.assignments, list(self.nodes))
        try:
            async for entry in watcher:
                if entry is None:
                    loaded.set()
                    continue
                node = self.nodes.get(entry.key)
                if node is None or not node.alive:
                    continue
                deleted = entry.operation in ("DEL", "PURGE")
                try:
                    new = node.gate.offer(None if deleted else entry.value, entry.revision or 0, authoritative=False)
                except WireError as exc:
                    self.log.warning("undecodable assignment ignored", node=node.name, error=str(exc))
                    continue
                if new is None:
                    continue
                node.wanted = {c.id: c for c in new.containers}
                started = converge(node.state, new.containers, time.time(), self.cfg.start_delay)
                await self._started(node, started)
                node.changed = True
                self._wake.set()
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    # --- heartbeats, starts and events ----------------------------------------------------------------------
    async def _ticker(self) -> None:
        """Every tick: start what is due, send the heartbeats that are due (periodic, staggered) or wanted
        (containers changed). A change wakes the ticker at once."""
        interval = self.cfg.heartbeat_interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.cfg.tick):
                    await self._wake.wait()
            self._wake.clear()
            mono, now = time.monotonic(), time.time()
            for node in self.nodes.values():
                if not node.alive:
                    continue
                started = promote(node.state, node.wanted, now)
                if started:
                    await self._started(node, started)
                    node.changed = True
                if node.changed or mono >= node.next_beat:
                    node.changed = False
                    node.next_beat = next_periodic_beat(node.next_beat, mono, interval)
                    await self._beat(node, now)

    async def _beat(self, node: HollowNode, now: float) -> None:
        nc = self.nc
        if nc is None or not (nc.is_connected or nc.is_reconnecting):
            return
        limit = hbwire.part_limit(nc.max_payload)
        subject = self.names.fleet(self.cfg.prefix, "hb", node.name)
        if await publish_parts(nc, subject, lambda: node.heartbeat(now, limit), self._warning, node=node.name):
            self.heartbeats_sent += 1

    async def _started(self, node: HollowNode, replica_ids: list[str]) -> None:
        now = time.time()
        for rid in replica_ids:
            a = node.wanted.get(rid)
            if a is None:
                continue
            msg = f"container drover-{a.service}-{rid} started (revision {a.revision})"
            ev = Event(time=now, kind="started", service=a.service, node=node.name, container=rid, message=msg)
            await self._publish(self.names.fleet_event(self.cfg.prefix, node.name, "started"), ev.to_wire())

    async def _publish(self, subject: str, data: bytes) -> None:
        nc = self.nc
        if nc is None or not (nc.is_connected or nc.is_reconnecting):
            return
        with contextlib.suppress(Exception):
            await nc.publish(subject, data)

    async def _on_die(self, msg: Msg) -> None:
        node = self.nodes.get(msg.subject.rsplit(".", 1)[-1])
        if node is None:
            return  # not one of ours
        node.alive = False
        self.log.info("hollow node told to die", node=node.name)
        reply: dict[str, Any] = {"ok": True, "node": node.name}
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(wire.encode(reply))

    def alive(self) -> list[str]:
        return [n.name for n in self.nodes.values() if n.alive]


async def run_fleet(cfg: FleetConfig) -> None:
    """Run a hollow fleet until cancelled."""
    fleet = HollowFleet(cfg)
    await fleet.start()
    assert fleet.sup is not None
    try:
        await asyncio.shield(fleet.sup.failed)
    finally:
        await asyncio.shield(fleet.stop())


__all__ = ["FleetConfig", "HollowFleet", "HollowNode", "run_fleet"]
