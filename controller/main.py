"""The controller daemon: caches desired and observed state, runs the level-triggered reconcile loop, writes
per-node assignments with compare-and-set, and answers the CLI's API requests."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import random
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import structlog
from nats.aio.msg import Msg

from drover.controller import api, records, views
from drover.controller import secrets as secrets_api
from drover.controller.apiserver import ApiServer
from drover.controller.assignwriter import AssignmentWriter
from drover.controller.autoscaler import Autoscaler
from drover.controller.config import ControllerConfig
from drover.controller.eventlog import EventLog
from drover.controller.feeds import StateFeeds
from drover.controller.fleetintake import FleetRegistrations
from drover.controller.freshness import LoopWatch, heartbeat_time
from drover.controller.heartbeats import HeartbeatIntake, Outcome
from drover.controller.leader import LeaderState
from drover.controller.leasekeeper import LeaseKeeper
from drover.controller.metrics import ControllerMetrics
from drover.controller.nodewatch import NodeWatch
from drover.controller.problems import ServiceProblems
from drover.controller.readbarrier import ReadBarrier, source_of
from drover.controller.reconcile import ClusterPlan, plan
from drover.controller.requestlog import TTL as REQUESTS_TTL
from drover.controller.requestlog import RequestLog
from drover.controller.rollout import Verdict
from drover.controller.scope import Scope, difference, unsettled
from drover.controller.secrets import Secrets
from drover.controller.snapshot import Snapshot, silent_for
from drover.controller.state import ClusterState
from drover.shared import bus, idempotency
from drover.shared.assignsize import assignment_limit
from drover.shared.cluster_key import cluster_key
from drover.shared.errors import PermanentError, WireError
from drover.shared.loopwatch import TICK as LOOP_TICK
from drover.shared.loopwatch import watch_loop
from drover.shared.models import Event
from drover.shared.outbox import EventOutbox
from drover.shared.retry import Backoff
from drover.shared.secretbox import default_key_file
from drover.shared.subjects import Names
from drover.shared.tasks import Supervisor

log = structlog.get_logger("drover.controller")

EVENTS_PER_STEP = 200  # planned events posted between two yields to the event loop (≈5 ms of work)



class Controller:
    def __init__(self, cfg: ControllerConfig):
        self.cfg = cfg
        self.id = cfg.id or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.names = Names(cfg.cluster)
        self.state = ClusterState(started=time.time(), node_grace=cfg.node_grace)
        self.problems = ServiceProblems()
        self.rng = random.Random()
        self.metrics = ControllerMetrics()
        self._dirty = asyncio.Event()
        self._subs: list[Any] = []
        self.sup: Supervisor | None = None
        self.elector: LeaseKeeper | None = None
        self.listings = views.ListingCache()  # rows of listings being paged through (api.get_*)
        self.heartbeats = HeartbeatIntake(self.state.touch, self.state.on_heartbeat, self._heartbeat_time)
        self._rest_until = 0.0  # perf_counter time before which the next reconcile pass waits (see the loop)
        # Services the last pass left not at rest (controller/scope.py): planned again without being marked.
        self._unsettled: set[str] = set()
        self._full_due = 0.0  # monotonic time of the next full pass (the safety net under the dirty marks)
        self.requests: RequestLog  # replies of write requests by request id (opened with the secrets bucket)
        self.autoscaler = Autoscaler(self)
        self.nodewatch = NodeWatch(self.post, self.state.restart_silence_clock, self.kick)
        self.secrets: Secrets | None = None
        self.barrier: ReadBarrier | None = None  # made with the informers (start)
        self.log = log.bind(controller=self.id, cluster=cfg.cluster)

    # --- lifecycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self.sup = Supervisor(f"controller-{self.id}")
        self.nc = await bus.connect(
            self.cfg.nats_url, name=f"drover-controller-{self.id}", retry_forever=True, creds=self.cfg.creds,
            ca=self.cfg.ca,
        )
        # The controller's store brings existing streams up to date (replicas, direct gets: only its
        # credentials may) and opens its own buckets with the others, all at once.
        n = self.names
        own = {n.secrets_bucket: bus.BucketSpec(), n.requests_bucket: bus.BucketSpec(ttl=REQUESTS_TTL),
               n.leader_bucket: bus.BucketSpec()}
        self.store = await bus.open_store(self.nc, self.cfg.cluster, manage=True, extra=own)
        await cluster_key(self.store)  # the agents' shared gossip key exists from the cluster's start
        await self._open_secrets()
        self.state.started = time.time()
        nc = self.nc

        def reconnects() -> int:
            return int(nc.stats.get("reconnects", 0))

        self.outbox = EventOutbox(self._js_publish, self.names.event)
        self.sup.start("events-out", self.outbox.run)
        self.loopwatch = LoopWatch(
            connected=lambda: nc.is_connected, reconnects=reconnects, on_restart=self.state.restart_silence_clock,
            on_stall=self._suspect_reads, stall=min(1.0, self.cfg.node_grace / 2), interval=LOOP_TICK,
        )
        self.sup.start("loopwatch", self._watch_loop)
        self.feeds = StateFeeds(
            self.store, self.state, report=self._report, kick=self.kick, reconnects=reconnects, clock=time.time,
        )
        self.writer = AssignmentWriter(
            self.store.assignments, self.state, self.feeds, self.metrics, kick=self.kick, step_down=self._step_down,
            log=self.log,
        )
        self.barrier = ReadBarrier([source_of(i) for i in self.feeds.all], notice=self.loopwatch.check,
                                   connected=lambda: self.nc.is_connected)
        self.api = ApiServer(
            lambda verb, body: api.HANDLERS[verb](self, body), lambda verb: verb in api.HANDLERS, self.requests,
            self.metrics, self.sup.spawn, self.log, ready=self._ready_for,
        )
        for informer in self.feeds.all:
            self.sup.start(f"watch-{informer.name}", informer.run)
        await asyncio.wait_for(asyncio.gather(*(i.ready.wait() for i in self.feeds.all)), 30)
        self._subs.append(await self.nc.subscribe(self.names.heartbeat_all, cb=self._on_heartbeat))
        # Hollow fleets speak on subjects that bind their credentials to their prefix (controller/fleetintake.py).
        self._subs.append(await self.nc.subscribe(self.names.fleet_all("hb"), cb=self._on_heartbeat))
        fleets = FleetRegistrations(
            self.names, self.store.nodes, on_bad=self.metrics.bad_messages.inc, spawn=self.sup.spawn, log=self.log
        )
        self._subs.append(
            await self.nc.subscribe(self.names.fleet_all("register"), queue="controllers", cb=fleets.on_request)
        )
        self._subs.append(
            await self.nc.subscribe(f"{self.names.api_prefix}.*", queue="controllers", cb=self.api.on_request)
        )
        self.eventlog = EventLog(
            self.store.js, self.names.events_stream, self.names.events_all, self.state.events, reconnects=reconnects,
        )
        self.state.events.on_bad = self.metrics.bad_messages.inc
        self.sup.start("events-in", self.eventlog.run)
        await asyncio.wait_for(self.eventlog.ready.wait(), 30)
        if self.cfg.metrics_port is not None:
            self.metrics.serve(self.cfg.metrics_address, self.cfg.metrics_port)
        leader_kv = await self.store.open_bucket(self.names.leader_bucket)  # opened with the store
        self.leader_kv = leader_kv
        cfg = self.cfg

        async def lease_connection() -> Any:  # the lease's own connection (on the lease thread's loop)
            return await bus.connect(
                cfg.nats_url, name=f"drover-controller-{self.id}-lease", retry_forever=True, creds=cfg.creds,
                ca=cfg.ca,
            )

        self.elector = LeaseKeeper(
            lease_connection, self.names.leader_bucket, self.id, ttl=self.cfg.lease_ttl,
            replicas=self.store.replicas, connected=lambda: nc.is_connected,
            on_change=self._on_leadership, term_floor=self._term_floor,
            on_damaged=lambda key, error: self._report(
                "record-damaged", "leader", key,
                f"leader record {key!r} cannot be decoded: {error}; rewritten by the next election", "",
            ),
        )
        self.sup.start("elect", self.elector.run)
        self.sup.start("reconcile", self._reconcile_loop)
        self.sup.start("autoscale", self.autoscaler.run)
        self.sup.start("replicas", self.store.keep_replicas)  # a cluster that grew since the open (shared/bus.py)
        if self.cfg.ui_port is not None:
            # aiohttp loads only when the UI is wanted, and in a worker thread: its import (0.6 s on a loaded
            # machine) on the event loop held up the API requests a restarted controller already takes.
            await asyncio.to_thread(importlib.import_module, "drover.controller.dashboard.actions")
            from drover.controller.dashboard import Dashboard
            from drover.controller.dashboard.actions import NatsActor

            actor = NatsActor(self.cfg.nats_url, self.names.api, self.cfg.ca) if self.cfg.ui_actions else None
            self.dashboard = Dashboard(
                self.query, lambda: self.state.service_rps, cluster=self.cfg.cluster,
                address=self.cfg.ui_address, port=self.cfg.ui_port, act=actor,
            )
            self.sup.start("dashboard", self.dashboard.run)
        self.log.info("controller started", nats=self.cfg.nats_url)

    async def _open_secrets(self) -> None:
        """The secrets bucket, the cluster's secret key (from a file, never NATS) and the agents' reads."""
        key_file = Path(self.cfg.secret_key_file) if self.cfg.secret_key_file else default_key_file(self.cfg.cluster)
        kv = await self.store.open_bucket(self.names.secrets_bucket)
        self.secrets = Secrets(kv, key_file)
        self.requests = RequestLog(await self.store.open_bucket(self.names.requests_bucket, ttl=REQUESTS_TTL))
        handler = secrets_api.read_handler(self)
        self._subs.append(await self.nc.subscribe(self.names.secret_read_all, queue="controllers", cb=handler))

    async def query(self, verb: str, body: dict[str, Any]) -> Any:
        """An API read answered in-process (what the dashboard shows is what the CLI gets)."""
        return await api.HANDLERS[verb](self, body)

    async def _js_publish(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        await self.store.js.publish(subject, data, headers=headers)

    def _suspect_reads(self, now: float) -> None:
        """The loop stalled: reads wait until the informers caught up (controller/readbarrier.py). Not after a
        reconnect: the informers list their buckets again then, and a proof needs every stream's leader, which
        a nats-server's death takes seconds to elect (reads refused meanwhile made a chaos run's recoveries
        after nats-kills 10-17 s instead of under 9 s)."""
        if self.barrier is not None:
            self.barrier.suspect(now)

    async def _ready_for(self, verb: str) -> bool:
        """Reads go through the read barrier; writes need not (compare-and-set against the bucket)."""
        return verb in idempotency.WRITE_VERBS or self.barrier is None or await self.barrier.ready()

    def _term_floor(self) -> int:
        """The highest term any assignment carries: a new term must be above it (the term key may be lost)."""
        return max((a.value.term for a in self.state.assignments.values()), default=0)

    def _report(self, kind: str, bucket: str, key: str, message: str, dedupe: str) -> None:
        node = key if bucket in ("assignments", "nodes", "nodectl") else ""
        service = key if bucket == "services" else ""
        self.post(kind, service=service, node=node, message=message, msg_id=dedupe or None)

    def _step_down(self, why: str) -> None:
        if self.elector is not None:
            self.elector.step_down(why)

    def _on_leadership(self, st: LeaderState) -> None:
        self.state.term = st.term
        self.state.dirty.mark_all()  # a new leader plans everything first
        self.kick()

    @property
    def unplaced(self) -> dict[str, str]:
        """service -> why it cannot converge (placement or reconcile problems): its status message."""
        return self.problems.blocking()

    @property
    def is_leader(self) -> bool:
        """Leading and able to prove it: a leader whose lease is not proven held stops acting."""
        return self.elector is not None and self.elector.holds()

    async def stop(self) -> None:
        if self.elector is not None:
            await self.elector.resign()
        with contextlib.suppress(Exception):
            await self.outbox.flush()
        if self.sup is not None:
            await self.sup.stop()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await self.nc.drain()
        self.metrics.close()
        self.log.info("controller stopped")

    def kick(self) -> None:
        self._dirty.set()

    def snapshot(self) -> Snapshot:
        return self.state.snapshot(time.time())

    def post(
        self, kind: str, *, service: str = "", node: str = "", container: str = "", message: str = "",
        msg_id: str | None = None,
    ) -> None:
        """Record a cluster event; it is stored in the events stream by the outbox, retried across a NATS
        outage (never blocks the caller)."""
        ev = Event(time=time.time(), kind=kind, service=service, node=node, container=container, message=message)
        self.outbox.put(ev, msg_id)

    async def emit(
        self, kind: str, *, service: str = "", node: str = "", container: str = "", message: str = ""
    ) -> None:
        self.post(kind, service=service, node=node, container=container, message=message)

    # --- observed state from agents --------------------------------------------------------------------------
    async def _on_heartbeat(self, msg: Msg) -> None:
        """A node's heartbeat (or a part of one), on its own subject ``…hb.<node>`` or its fleet's
        ``…fleet.<prefix>.hb.<node>``: the node is the subject's (``controller/heartbeats.py``)."""
        try:
            node = self.names.heartbeat_node(msg.subject)
            if not node:
                raise WireError(f"{msg.subject}: no node of this subject's fleet")
            outcome = self.heartbeats.feed(node, msg.data, time.time())
        except WireError as exc:
            self.metrics.bad_messages.inc()
            self.log.warning("bad heartbeat dropped", subject=msg.subject, error=str(exc))
            return
        if outcome is not Outcome.PARTIAL:
            self.metrics.heartbeats.inc()
        if outcome is Outcome.CHANGED:
            self.kick()

    def _heartbeat_time(self, sent: Any, received: float) -> float:
        # A stall is noticed here, at the first message read after it, not at the next 0.1 s tick: the
        # heartbeats queued meanwhile are read first and must be dated knowing it (freshness.heartbeat_time).
        self.loopwatch.check()
        return heartbeat_time(sent, received, self.state.clock_restarted, drain=self.cfg.node_grace)

    # --- reconcile -------------------------------------------------------------------------------------------
    def _next_wait(self, now: float) -> float:
        """Sleep until the next resync, or until the moment a node's heartbeats would run out (so that a lost
        node is acted on at once, not up to a resync interval later)."""
        wait = self.cfg.resync_interval
        for node in self.state.nodes.values():
            due = self.cfg.node_grace - silent_for(node, now)
            if due >= 0:
                wait = min(wait, due + 0.01)
        return max(0.0, wait)

    def _warm(self, now: float) -> bool:
        """After a (re)start, wait until every known node has reported (or its grace ran out) before acting,
        so that replicas whose status is simply not known yet are not replaced."""
        if now - self.state.started >= self.cfg.node_grace:
            return True
        return all(n.last_heartbeat is not None for n in self.state.nodes.values())

    async def until_warm(self) -> None:
        """Reads wait for ``_warm`` (at most a node grace after a start): a restarted controller would answer
        from the registrations alone, every service "progressing" with no replica running, until the nodes'
        first heartbeats."""
        while True:  # polled: warmth comes from heartbeats or from the grace running out, whichever is first
            if self._warm(time.time()):
                return
            await asyncio.sleep(0.05)

    async def _watch_loop(self) -> None:
        """One 0.1 s ticker for the event loop: its lag goes to the metric (with the GC policy and stall logs
        of ``watch_loop``) and to ``LoopWatch``, which restarts the nodes' silence clock after a stall or a
        NATS reconnect."""
        watch = self.loopwatch
        observe_lag = self.metrics.observe_loop_lag
        watch.begin()

        def tick(lag: float) -> None:
            observe_lag(lag)
            watch.check()

        await watch_loop(tick, warn_after=self.cfg.lease_ttl / 4, log=self.log)

    async def _reconcile_loop(self) -> None:
        backoff = Backoff(initial=0.2, cap=5.0)
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races a wake-up.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._next_wait(time.time())):
                    await self._dirty.wait()
            rest = self._rest_until - time.perf_counter()
            if rest > 0:
                await asyncio.sleep(rest)
            self._dirty.clear()
            if self.loopwatch.check():
                continue  # the loop stalled or NATS came back: read what is queued before judging anyone
            now = time.time()
            self.state.expire_unregistered(now)  # heartbeats of names nobody registered do not pile up
            if not self.is_leader or not self._warm(now):
                continue
            dirty = self.state.dirty
            if time.monotonic() >= self._full_due:
                dirty.mark_all()
            for name in self.nodewatch.moved(self.state.nodes, now, self.cfg.node_grace):
                dirty.mark_node(name)  # lost (its heartbeats ran out), back, or drained since the last pass
            if not dirty and not self._unsettled and not self.feeds.damaged_assignments:
                continue  # nothing changed and nothing is under way: a pass would find nothing to do
            try:
                await self._reconcile_once(now)
                backoff.reset()
            except Exception as exc:  # never crash-loop the task: report once, retry with backoff
                self.state.dirty.mark_all()  # what that pass was to look at is looked at again, and more
                self.log.error("reconcile pass failed", error=repr(exc), exc_info=True)
                if self.problems.set("reconcile", "", f"reconcile pass failed: {exc!r}"):
                    self.post("reconcile-failed", message=f"reconcile pass failed: {exc!r}")
                await backoff.wait()
                self.kick()

    async def _reconcile_once(self, now: float) -> None:
        t0 = time.perf_counter()
        if self.feeds.damaged_assignments:
            await self.writer.repair()
        if self.nc is not None:  # the server's own limit (INFO), which a reconnect to another server may change
            self.state.assign_limit = assignment_limit(self.nc.max_payload)
        snap = self.state.snapshot(now, detached=True)
        taken = self.state.dirty.take()
        if self.nodewatch.transitions(snap):
            self.state.dirty.mark_all()  # a disruption ended: every node's clock restarted, look at all again
            return
        if taken is None:
            self._full_due = time.monotonic() + self.cfg.full_resync_interval
            scope = None
        else:
            scope = Scope(taken.services | self._unsettled, taken.nodes)
        # plan() is pure and takes time in proportion to what it looks at (a full pass ≈0.2 s at 10,000
        # replicas): in a worker thread the event loop keeps running every few milliseconds (the GIL switches),
        # so the lease renewal, heartbeats and API requests are never held up by a pass.
        p = await asyncio.to_thread(self._plan, snap, scope)
        took = time.perf_counter() - t0
        self.metrics.reconcile_seconds.observe(took)
        # Rest as long as the pass took (at most a second): the controller spends at most half its time
        # planning, and a burst of changes (thousands of heartbeats) is planned in one pass, not one each.
        self._rest_until = time.perf_counter() + min(took, 1.0)
        if scope is None and p.empty and not p.events:
            # The periodic full pass found nothing to do (the usual case): no burst to gather, so no rest. A
            # node lost meanwhile (1.4 s of full pass at 100,000 replicas) is planned at once, not a second later.
            self._rest_until = 0.0
        self._unsettled = unsettled(snap, p, snap.services if p.planned is None else p.planned)
        if took > 0.5:
            replicas = sum(len(a.containers) for a in snap.assignments.values())
            planned = len(snap.services) if p.planned is None else len(p.planned)
            self.log.info("slow reconcile pass", seconds=round(took, 3), replicas=replicas, services=planned)
        if p.disrupted:
            self.state.dirty.mark_all()  # nothing was planned: everything is looked at once it is over
            return
        self.problems.set("reconcile", "", None)
        for service, why in self.problems.update("placement", p.unplaced):
            self.post("unschedulable", service=service, message=why)
        for service, why in self.problems.update("reconcile", p.failed):
            self.log.warning("service skipped", service=service, error=why)
            self.post("reconcile-failed", service=service, message=f"skipped: {why}")
        if p.empty:
            return
        await self._record_verdicts(p.verdicts)
        await records.record_jobs(self, p.jobs)
        for i, ev in enumerate(p.events, 1):
            self.post(ev.kind, service=ev.service, node=ev.node, container=ev.container, message=ev.message)
            if i % EVENTS_PER_STEP == 0:  # 10,000 replicas placed are 10,000 events: let the loop breathe
                await asyncio.sleep(0)
        if self.is_leader:  # the lease may have lapsed while the verdicts were written
            await self.writer.write(p.assignments)

    def _plan(self, snap: Snapshot, scope: Scope | None) -> ClusterPlan:
        """The plan of a pass (in the worker thread): of the scope, or of everything. With ``verify_scope``
        the full plan is made too, from the same randomness, and any difference is written down."""
        if scope is None or not self.cfg.verify_scope:
            return plan(snap, self.rng, scope)
        state = self.rng.getstate()
        full = plan(snap, self.rng)
        self.rng.setstate(state)
        p = plan(snap, self.rng, scope)
        diff = difference(p, full)
        if diff is not None:
            with open(self.cfg.verify_scope, "a") as f:
                f.write(f"{time.time():.3f} {self.id} scope {sorted(scope.services)} {sorted(scope.nodes)}: {diff}\n")
            self.rng.setstate(state)
            return plan(snap, self.rng)  # (the full plan is the one acted on)
        return p

    async def _record_verdicts(self, verdicts: dict[str, Verdict]) -> None:
        for name, verdict in verdicts.items():
            rec = self.state.services.get(name)
            if rec is None:
                continue
            try:
                new = records.apply_verdict(rec.value, verdict, time.time())
            except Exception as exc:  # a record the verdict cannot be applied to: this service only
                if self.problems.set("reconcile", name, f"rollout verdict failed: {exc!r}"):
                    self.post("reconcile-failed", service=name, message=f"rollout verdict failed: {exc!r}")
                continue
            try:
                rev = await self.store.services.update(name, new.to_wire(), last=rec.rev)
            except Exception as exc:  # a concurrent apply: the next pass judges the fresh record
                self.log.info("rollout verdict not recorded", service=name, error=str(exc))
                continue
            self.state.set_service(name, new, rev)
            if verdict.state in ("complete", "failed", "rolled-back"):
                msg = f"revision {rec.value.revision} {verdict.state}"
                if verdict.reason:
                    msg += f": {verdict.reason}"
                if verdict.state == "rolled-back":
                    msg += f"; returning to revision {verdict.rollback_to}"
                self.post("rollout-" + verdict.state, service=name, message=msg)
            self.kick()



async def run_controller(cfg: ControllerConfig) -> None:
    """Run a controller until cancelled."""
    ctl = Controller(cfg)
    await ctl.start()
    try:
        assert ctl.sup is not None
        failed = await ctl.sup.failed
        raise PermanentError(f"controller task failed: {failed!r}")
    finally:
        await ctl.stop()
