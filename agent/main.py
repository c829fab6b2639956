"""The agent daemon: registers its node, watches its assignment, converges its containers, reports status.

Loops (all supervised): one reconcile loop (woken by the assignment watch, driver events, the periodic
resync, restart back-off timers and finished workers) that plans and hands each replica's actions to that
replica's worker (``workers.py``: replicas never wait on each other), the assignment watch, a resync every
few seconds (level-triggered: re-reads the assignment and the registration, which survives a NATS
restart), the heartbeat sender (``heartbeat.py``) and the driver event stream. Losing NATS never stops the agent:
containers keep running and are still restarted; publishing resumes when NATS is back.

The registration, the assignment watch and the resync live in ``membership.py`` (``AssignmentFeed``); the
pure status computation in ``status.py``; the pure reconciler in ``reconcile.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog
from nats.aio.client import Client as NATS

from drover.agent.assignment import AssignmentGate
from drover.agent.config import AgentConfig
from drover.agent.discovery import Discovery
from drover.agent.driverevents import follow_driver_events
from drover.agent.drivers.base import Driver, ImageMissing, Observed
from drover.agent.drivers.factory import make_driver as _make_driver
from drover.agent.fence import STATE_FILE, TermFile
from drover.agent.files import FileWriter, default_dirs, secret_fetcher
from drover.agent.heartbeat import HeartbeatSender
from drover.agent.logs_api import LogsApi
from drover.agent.membership import VERSION as VERSION
from drover.agent.membership import AssignmentFeed, node_registration, reconnect_count, store_incarnation
from drover.agent.metrics import AgentMetrics
from drover.agent.probes import ProbeManager
from drover.agent.reconcile import (
    Action,
    Create,
    Remove,
    Restart,
    RestartState,
    Start,
    Stop,
    Wait,
    after_create,
    after_create_failure,
    after_restart,
    cpu_quota,
    crash_looping,
    next_wakeup,
    plan,
    stop_grace,
)
from drover.agent.status import node_statuses
from drover.agent.usage import UsageCollector
from drover.agent.workers import ReplicaWorkers
from drover.shared import bus
from drover.shared.bus import ClusterStore
from drover.shared.models import (
    AssignedContainer,
    Assignment,
    ContainerStatus,
    Event,
    Heartbeat,
    NodeRegistration,
)
from drover.shared.outbox import EventOutbox
from drover.shared.subjects import Names
from drover.shared.tasks import Supervisor


def make_driver(cfg: AgentConfig) -> Driver:
    return _make_driver(cfg.driver, cfg.cluster, cfg.node, pull=cfg.pull_images, docker_config=cfg.docker_config)


class Agent:
    def __init__(self, cfg: AgentConfig, *, driver: Driver | None = None):
        self.cfg = cfg
        self.names = Names(cfg.cluster)
        self.log = structlog.get_logger("drover.agent").bind(node=cfg.node)
        self._driver = driver
        self.boot_id = ""
        self.nc: NATS | None = None
        self.store: ClusterStore | None = None
        self.outbox: EventOutbox | None = None
        self.sup: Supervisor | None = None
        self.metrics = AgentMetrics(cfg.node)
        self.metrics_port: int | None = None
        # Fencing across restarts: the highest term accepted is kept in the data dir, read back in ``start``.
        self.terms = TermFile(Path(cfg.data_dir) / STATE_FILE if cfg.data_dir else None)
        self.gate = AssignmentGate(cfg.node, on_term=self.terms.save)
        self.observed: list[Observed] = []
        self.statuses: list[ContainerStatus] = []
        self.restart_state: dict[str, RestartState] = {}
        self._graces: dict[tuple[str, int], float] = {}
        self._busy: set[str] = set()  # replica ids being created
        self._stopping: dict[str, float] = {}  # container ids the agent itself stopped -> when
        self._wake = asyncio.Event()
        self.beats = HeartbeatSender(
            lambda: self.nc,
            self.names.heartbeat(cfg.node),
            self.heartbeat,
            interval=cfg.heartbeat_interval,
            before_send=lambda: self.feed.check_reconnect() if self.feed is not None else None,
            log=self.log,
        )
        self._next_wake: float | None = None
        self._hb_seq = 0
        self.feed: AssignmentFeed | None = None  # registration and assignment watch (agent/membership.py)
        self._probes: ProbeManager | None = None
        self._logs: LogsApi | None = None
        self._passes = 0
        self.gossip_port = 0  # set by the gossip layer, published in the registration
        self.gossip_pubkey = ""  # the gossip layer's ed25519 public key (hex), published in the registration
        self._status_listeners: list[Callable[[list[ContainerStatus]], None]] = []
        self.discovery: Discovery | None = None  # gossip, per-node proxy, endpoints API (agent/discovery/)
        self.usage: UsageCollector | None = None  # cpu/memory/request-rate measurements (agent/usage.py)
        self.workers: ReplicaWorkers = ReplicaWorkers(self._spawn, on_done=self.trigger)
        self.files: FileWriter | None = None  # spec.files written on the node (agent/files.py)

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def driver(self) -> Driver:
        if self._driver is None:
            self._driver = make_driver(self.cfg)
        return self._driver

    @property
    def node(self) -> str:
        return self.cfg.node

    async def start(self) -> None:
        """Connect, register, read the assignment, converge once; then run the loops in the background."""
        self.boot_id = uuid.uuid4().hex
        self.sup = Supervisor(f"agent-{self.node}")
        self._probes = ProbeManager(
            self.driver,
            self.cfg.address,
            on_change=self._status_changed,
            on_failure=self._probe_failed,
            on_miss=lambda a, o, why: self.metrics.probe_failures.inc(),
            spawn=self.sup.spawn,
        )
        usage = self.usage = UsageCollector(self.driver, spawn=self.sup.spawn)
        self.add_status_listener(lambda statuses: usage.sync(self.assignment, statuses))
        if self.cfg.metrics_port is not None:
            self.metrics_port = self.metrics.serve(self.cfg.metrics_address, self.cfg.metrics_port)
        # Pings every second: a connection cut for a few seconds (a partition) is found stale and replaced
        # after ~3 s; kept, it would resume only at TCP's next backed-off retransmission, up to seconds after
        # the network healed (heartbeats lost meanwhile).
        self.nc = await bus.connect(
            self.cfg.nats_url, name=f"drover-agent-{self.node}", retry_forever=True, creds=self.cfg.creds,
            ca=self.cfg.ca, source=self.cfg.nats_source, ping_interval=bus.FAST_PING_INTERVAL,
        )
        reconnects = reconnect_count(self.nc)
        self.store = await bus.open_store(self.nc, self.cfg.cluster)
        self.gate.max_term = max(self.gate.max_term, self.terms.load(await store_incarnation(self.store, self.log)))
        js = self.store.js

        async def js_publish(subject: str, data: bytes, headers: dict[str, str]) -> None:
            await js.publish(subject, data, headers=headers)

        # Events go through an outbox (acknowledged, retried): a plain publish just after a NATS restart, before
        # JetStream recovered the events stream, was accepted and silently not stored.
        node, names = self.node, self.names
        self.outbox = EventOutbox(js_publish, lambda kind: names.node_event(node, kind))
        self.sup.start("events-out", self.outbox.run)
        feed = self.feed = AssignmentFeed(
            self.node,
            self.boot_id,
            self.nc,
            self.store,
            self.gate,
            self.sup,
            registration=self.registration,
            on_assignment=self._assigned,
            wake=self.trigger,
            resync_interval=self.cfg.resync_interval,
            reconnects=reconnects,
            log=self.log,
        )
        files_dir, secrets_dir = default_dirs(self.cfg.cluster, self.node, self.cfg.data_dir)
        self.files = FileWriter(files_dir, secrets_dir, secret_fetcher(self.nc, self.names.secret_read(self.node)))
        discovery = self.discovery = Discovery(
            self.cfg, self.nc, self.store, self.names, self.sup, registry=self.metrics.registry
        )
        self.add_status_listener(discovery.on_statuses)
        self.gossip_port = await discovery.start()  # before the registration, which carries it
        self.gossip_pubkey = discovery.public_key_hex
        await feed.register()
        await feed.read_assignment()
        try:
            await self._reconcile_pass()
        except Exception as exc:  # e.g. Docker briefly away: the reconcile loop keeps trying
            self.log.warning("first reconcile failed; retrying in the background", error=repr(exc))
            self._next_wake = time.time() + 1.0
        # The first heartbeat as soon as it can be truthful: gossip and proxy up, registration put, the node's
        # containers observed (an agent restarted by `drover up` must be heard within the node grace). The
        # rest of the start (logs API, loops, aiodocker's import on the first event stream) comes after it.
        await self.beats.send()
        assert self.sup is not None
        self._logs = LogsApi(
            self.nc,
            self.names.agent_api(self.node, "logs"),
            self.node,
            self.driver,
            lambda: self.observed,
            self.sup.spawn,
        )
        await self._logs.start()
        self.sup.start("reconcile", self._reconcile_loop)
        self.sup.start("watch", feed.watch_loop)
        self.sup.start("resync", feed.resync_loop)
        self.sup.start("heartbeat", self.beats.run)
        self.sup.start("driver-events", self._events_loop)
        self.log.info("agent started", address=self.cfg.address, driver=self.driver.name, boot_id=self.boot_id)

    async def stop(self, remove_containers: bool = False) -> None:
        """Stop every loop; with ``remove_containers`` also stop and remove this node's containers."""
        if self.sup is not None:
            await self.sup.stop()
        if self.discovery is not None:
            await self.discovery.stop()  # peers drop this node's endpoints before its containers go
        if self._probes is not None:
            await self._probes.stop()
        if self.usage is not None:
            await self.usage.stop()
        if self._logs is not None:
            await self._logs.stop()
        if remove_containers:
            with contextlib.suppress(Exception):
                observed = await self.driver.list()
                graces = {a.id: stop_grace(a.spec) for a in (self.assignment.containers if self.assignment else [])}
                await asyncio.gather(
                    *(self._remove_container(o, graces.get(o.id, 2.0)) for o in observed),
                    return_exceptions=True,
                )
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 5)
            self.nc = None
        with contextlib.suppress(Exception):
            await self.driver.close()
        self.metrics.close()
        self.log.info("agent stopped", removed=remove_containers)

    async def _remove_container(self, o: Observed, grace: float) -> None:
        self._stopping[o.container_id] = time.monotonic()
        if o.state != "exited":
            await self.driver.stop(o.container_id, grace)
        await self.driver.remove(o.container_id)

    # --- registration & assignment --------------------------------------------------------------

    def registration(self) -> NodeRegistration:
        return node_registration(
            self.cfg, self.driver.name, self.boot_id, self.gossip_port, time.time(), self.gossip_pubkey
        )

    def add_status_listener(self, callback: Callable[[list[ContainerStatus]], None]) -> None:
        """Call ``callback(statuses)`` whenever this node's container statuses change (e.g. for gossip)."""
        self._status_listeners.append(callback)

    async def reregister(self) -> None:
        """Put the registration again (after ``gossip_port`` or labels changed)."""
        assert self.feed is not None
        await self.feed.register()

    @property
    def assignment(self) -> Assignment | None:
        """The assignment in force (None until one was read)."""
        return self.gate.current

    def _assigned(self, new: Assignment) -> None:
        for c in new.containers:
            self._graces[(c.id, c.revision)] = stop_grace(c.spec)
        self.trigger()

    def trigger(self) -> None:
        self._wake.set()

    def _spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> asyncio.Task[Any]:
        assert self.sup is not None, "workers run only once the agent started"
        return self.sup.spawn(name, coro)

    # --- reconcile ------------------------------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        while True:
            timeout = None if self._next_wake is None else max(0.0, self._next_wake - time.time())
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: wait_for may swallow a cancel on 3.11
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._reconcile_pass()
            except Exception as exc:
                self.log.warning("reconcile pass failed; retrying", error=repr(exc))
                self._next_wake = time.time() + 1.0

    async def _reconcile_pass(self) -> None:
        """Observe, plan (pure), hand the actions to the replicas' workers; never waits for an action."""
        self._passes += 1
        cutoff = time.monotonic() - 60
        self._stopping = {cid: t for cid, t in self._stopping.items() if t > cutoff}
        self.observed = await self.driver.list()
        actions: list[Action] = []
        if self.assignment is not None:
            actions = plan(
                self.assignment.containers, self.observed, time.time(), self.restart_state, graces=self._graces
            )
        self._next_wake = next_wakeup(actions)
        work = [a for a in actions if not isinstance(a, Wait)]
        if work:
            by_cid = {o.container_id: o for o in self.observed}
            specs = {c.id: c for c in (self.assignment.containers if self.assignment else [])}

            async def run_group(group: list[Action]) -> None:
                await self._run_group(group, by_cid, specs)

            self.workers.dispatch(work, run_group)
        if self.assignment is not None:
            keep = {c.id for c in self.assignment.containers}
            for rid in list(self.restart_state):
                if rid not in keep and not self.workers.busy(rid):
                    del self.restart_state[rid]
            present = keep | {o.id for o in self.observed}
            self._graces = {k: g for k, g in self._graces.items() if k[0] in present}
            if self.files is not None:
                self.files.prune(present | self._busy)
        self._refresh_status()

    async def _run_group(
        self, group: list[Action], by_cid: dict[str, Observed], specs: dict[str, AssignedContainer]
    ) -> None:
        """One replica's actions, in order (its worker); the first failure ends the group (the next pass
        plans again from what is then observed)."""
        if self.discovery is not None:  # out of the endpoint table before they stop (no lost requests)
            await self.discovery.withdraw(a.container_id for a in group if isinstance(a, Stop | Remove))
        for action in group:
            try:
                await self._do(action, by_cid, specs)
            except Exception as exc:
                self.log.warning("action failed", action=action.kind, container=action.id, error=repr(exc))
                return

    async def _do(self, action: Action, by_cid: dict[str, Observed], specs: dict[str, AssignedContainer]) -> None:
        self.metrics.action(action.kind)
        if isinstance(action, Create):
            await self._create(action.assigned)
        elif isinstance(action, Start):
            await self.driver.restart(action.container_id, cpu_quota(specs.get(action.id)))
        elif isinstance(action, Restart):
            await self._restart(action, by_cid[action.container_id], specs.get(action.id))
        elif isinstance(action, Stop):
            self._stopping[action.container_id] = time.monotonic()
            await self.driver.stop(action.container_id, action.grace)
        elif isinstance(action, Remove):
            self._stopping[action.container_id] = time.monotonic()
            await self.driver.remove(action.container_id)
            o = by_cid.get(action.container_id)
            self.event("removed", o.service if o else "", action.id, action.reason or "removed")

    async def _create(self, a: AssignedContainer) -> None:
        blog = self.log.bind(service=a.service, container=a.id)
        state = self.restart_state.get(a.id, RestartState())
        self._busy.add(a.id)
        self._refresh_status()
        try:
            with_env = self.discovery.with_env(a) if self.discovery is not None else a
            if self.files is not None:
                with_env = await self.files.prepare(with_env)
            obs = await self.driver.create_and_start(with_env, self.cfg.address)
        except ImageMissing as exc:
            self.restart_state[a.id] = after_create_failure(state, time.time(), str(exc))
            if state.message != str(exc):
                self.event("image-missing", a.service, a.id, str(exc))
            blog.warning("image missing", image=exc.image)
            return
        except Exception as exc:
            msg = f"create failed: {exc}"
            self.restart_state[a.id] = after_create_failure(state, time.time(), msg)
            if state.message != msg:
                self.event("create-failed", a.service, a.id, msg)
            blog.warning("create failed", error=str(exc))
            return
        finally:
            self._busy.discard(a.id)
        self.restart_state[a.id] = after_create(state)
        self._saw(obs)
        self.event("started", a.service, a.id, f"container {obs.name} started (revision {a.revision})")
        blog.info("container started", container_id=obs.container_id[:12], port_map=obs.port_map)

    async def _restart(self, action: Restart, obs: Observed, a: AssignedContainer | None) -> None:
        now = time.time()
        state = self.restart_state.get(action.id, RestartState())
        new = after_restart(state, obs, now)
        self.restart_state[action.id] = new
        await self.driver.restart(action.container_id, cpu_quota(a))
        self.metrics.restarts.inc()
        service = a.service if a else obs.service
        self.event("restarted", service, action.id, f"restarted after exit code {action.exit_code} (#{new.restarts})")
        self.log.info("container restarted", service=service, container=action.id, restarts=new.restarts)
        if crash_looping(new, None, now) and not crash_looping(state, None, now):
            self.event("crash-loop", service, action.id, f"restarted {new.streak} times in a row")

    # --- status & heartbeat ---------------------------------------------------------------------

    def _saw(self, obs: Observed) -> None:
        """A container this agent just started is reported at once (the heartbeat goes now), not after the
        next pass has listed the engine's containers again (that pass still runs and confirms it)."""
        self.observed = [o for o in self.observed if o.container_id != obs.container_id] + [obs]
        self._refresh_status()

    def _status_changed(self) -> None:
        self._refresh_status()

    def _refresh_status(self) -> None:
        probes = self._probes
        statuses, probe_targets = node_statuses(
            self.assignment,
            self.observed,
            self.restart_state,
            time.time(),
            probe_result=probes.result if probes is not None else None,
            busy=self._busy,
        )
        if probes is not None and self.assignment is not None:
            probes.sync(probe_targets)
        counts: dict[str, int] = defaultdict(int)
        for s in statuses:
            counts[str(s.state)] += 1
        self.metrics.set_containers(dict(counts))
        if [s.model_dump() for s in statuses] != [s.model_dump() for s in self.statuses]:
            self.statuses = statuses
            self.beats.now()
            for cb in self._status_listeners:
                try:
                    cb(list(statuses))
                except Exception as exc:
                    self.log.warning("status listener failed", error=repr(exc))

    def heartbeat(self) -> Heartbeat:
        self._hb_seq += 1
        hb = Heartbeat(
            node=self.node,
            boot_id=self.boot_id,
            seq=self._hb_seq,
            time=time.time(),
            generation=self.assignment.generation if self.assignment else 0,
            containers=list(self.statuses),
        )
        proxy = self.discovery.proxy if self.discovery is not None else None
        return self.usage.fill(hb, proxy.stats if proxy is not None else None) if self.usage is not None else hb

    # --- driver events, probes, cluster events -------------------------------------------------

    async def _events_loop(self) -> None:
        def service_of(container_id: str) -> str:
            return next((o.service for o in self.observed if o.container_id == container_id), "")

        await follow_driver_events(
            self.driver, stopping=lambda: self._stopping, service_of=service_of, event=self.event, wake=self.trigger
        )

    async def _probe_failed(self, a: AssignedContainer, obs: Observed, why: str) -> None:
        self.event("probe-failed", a.service, a.id, f"health check failed: {why}; killing the container")
        self.log.warning("health check failed; killing", service=a.service, container=a.id, reason=why)
        try:
            await self.driver.stop(obs.container_id, 0)
        except Exception as exc:
            self.log.warning("kill after probe failure failed", error=repr(exc))
        self.trigger()

    def event(self, kind: str, service: str, container: str, message: str) -> None:
        ev = Event(time=time.time(), kind=kind, service=service, node=self.node, container=container, message=message)
        if self.outbox is not None:
            self.outbox.put(ev)


async def run_agent(cfg: AgentConfig, *, remove_containers: bool = False) -> None:
    """Run an agent until cancelled (the ``drover agent`` command). Containers keep running on exit unless
    ``remove_containers`` (``drover up`` without ``--keep``)."""
    agent = Agent(cfg)
    await agent.start()
    assert agent.sup is not None
    try:
        await asyncio.shield(agent.sup.failed)
    finally:
        await asyncio.shield(agent.stop(remove_containers=remove_containers))


__all__ = ["Agent", "AgentConfig", "make_driver", "run_agent"]
