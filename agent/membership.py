"""``AssignmentFeed``: an agent's link to the cluster store — its node registration and its assignment.

It puts the registration, reads the assignment and watches it, and every resync re-checks both (the
registration is put again when it is missing or carries another boot id; the assignment is re-read
authoritatively). A NATS reconnect (seen by the resync and heartbeat loops) re-registers and re-reads at
once, and restarts the watch. Which assignment is in force is the ``AssignmentGate``'s decision; a new one
is handed to ``on_assignment``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog
from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError

from drover.agent.assignment import AssignmentGate
from drover.agent.config import AgentConfig
from drover.agent.fence import incarnation
from drover.shared.bus import JS_TRANSIENT, JS_WRITE_DEADLINE, ClusterStore
from drover.shared.cluster_key import cluster_key
from drover.shared.errors import WireError
from drover.shared.models import Assignment, NodeRegistration, Resources
from drover.shared.ownkey import OwnKeyWatch, own_key_reader
from drover.shared.retry import retrying
from drover.shared.tasks import Supervisor

VERSION = "0.1.0"


def node_registration(
    cfg: AgentConfig, driver: str, boot_id: str, gossip_port: int, now: float, gossip_pubkey: str = ""
) -> NodeRegistration:
    """What a node puts in the nodes bucket: its address, labels, capacity, driver, life (boot id), gossip port
    and gossip public key."""
    return NodeRegistration(
        name=cfg.node,
        address=cfg.address,
        labels=dict(cfg.labels),
        capacity=Resources(cpu=cfg.capacity_cpu, memory=cfg.capacity_memory),
        driver=driver,
        boot_id=boot_id,
        started_at=now,
        version=VERSION,
        gossip_port=gossip_port,
        gossip_pubkey=gossip_pubkey,
    )


def reconnect_count(nc: NATS | None) -> int:
    """How often the NATS client reconnected so far (0 without a client)."""
    if nc is None:
        return 0
    return int(nc.stats.get("reconnects", 0))


class AssignmentFeed:
    def __init__(
        self,
        node: str,
        boot_id: str,
        nc: NATS,
        store: ClusterStore,
        gate: AssignmentGate,
        sup: Supervisor,
        *,
        registration: Callable[[], NodeRegistration],
        on_assignment: Callable[[Assignment], None],
        wake: Callable[[], None],
        resync_interval: float,
        reconnects: int,
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        """``reconnects``: the NATS reconnect count already accounted for (taken right after connecting)."""
        self.node = node
        self.boot_id = boot_id
        self.nc = nc
        self.store = store
        self.gate = gate
        self.sup = sup
        self.registration = registration
        self.on_assignment = on_assignment
        self.wake = wake
        self.resync_interval = resync_interval
        self.log = log
        self.reconnects = reconnects
        self.registered = False
        # The assignment is read through the subjects that name this node's key: an agent's credentials
        # grant those and no other node's (shared/ownkey.py).
        self.assignments = own_key_reader(nc, store.names.assignments_bucket)

    async def register(self, *, retry_for: float = 0.0) -> None:
        """Put the registration. ``retry_for`` (seconds): put it again meanwhile when the nodes stream has no
        leader for a moment (a nats-server died; its streams elect new leaders within seconds), instead of
        leaving it to the next resync; any other failure, or one lasting longer, is left to the resync."""

        async def put() -> None:
            await self.store.nodes.put(self.node, self.registration().to_wire())

        try:
            await retrying(put, retry_on=JS_TRANSIENT, deadline=retry_for)
            self.registered = True
        except Exception as exc:
            self.registered = False
            self.log.warning("registration failed; will retry", error=repr(exc))

    async def read_assignment(self) -> None:
        try:
            entry = await self.assignments.get(self.node)
        except KeyNotFoundError:
            return  # nothing assigned yet: keep what runs
        except Exception as exc:
            self.log.warning("cannot read assignment", error=repr(exc))
            return
        self.offer(entry.value, entry.revision or 0, authoritative=True)

    def offer(self, value: bytes | None, revision: int, *, authoritative: bool) -> None:
        rejected = self.gate.rejected
        try:
            new = self.gate.offer(value, revision, authoritative=authoritative)
        except WireError as exc:
            self.log.warning("undecodable assignment dropped", error=str(exc))
            return
        if self.gate.rejected != rejected:
            self.log.warning("assignment from a stale controller term ignored", highest=self.gate.max_term)
        if new is None:
            return
        self.log.info("assignment", generation=new.generation, term=new.term, containers=len(new.containers))
        self.on_assignment(new)

    async def watch_loop(self) -> None:
        while True:
            watcher = await OwnKeyWatch(self.nc, self.store.names.assignments_bucket, self.node).start()
            generation = self.reconnects
            try:
                while generation == self.reconnects:
                    update = await watcher.updates(timeout=2.0)
                    if update is not None:
                        self.offer(update.value, update.revision, authoritative=False)
            finally:
                with contextlib.suppress(Exception):
                    await watcher.stop()

    async def resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.resync_interval)
            self.check_reconnect()
            try:
                await self.check_registration()
                await self.read_assignment()
            except Exception as exc:
                self.log.warning("resync failed", error=repr(exc))
            self.wake()

    async def check_registration(self) -> None:
        if not self.registered:
            await self.register()
            return
        try:
            entry = await self.store.nodes.get(self.node)
            if entry.value is None or NodeRegistration.from_wire(entry.value).boot_id != self.boot_id:
                await self.register()
        except KeyNotFoundError:
            await self.register()

    def check_reconnect(self) -> None:
        n = reconnect_count(self.nc)
        if n != self.reconnects:
            self.reconnects = n
            self.log.info("NATS reconnected: re-registering and re-reading the assignment")
            self.registered = False
            self.sup.spawn("re-register", self.after_reconnect())

    async def after_reconnect(self) -> None:
        # A reconnect because a nats-server died often meets that server's streams electing new leaders.
        await self.register(retry_for=JS_WRITE_DEADLINE)
        await self.read_assignment()
        self.wake()


async def store_incarnation(store: ClusterStore, log: Any) -> str | None:
    """Which incarnation of the cluster's store this is (None when the cluster key cannot be read): a term
    the agent kept applies only to the incarnation it was accepted in (``fence.TermFile``)."""
    try:
        return incarnation(await cluster_key(store))
    except Exception as exc:
        log.warning("cluster incarnation unknown; the kept term applies as it is", error=repr(exc))
        return None
