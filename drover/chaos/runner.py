"""One chaos run against a ``drover up`` lab: apply a service of its own, run the fault schedule while
traffic flows through every node's proxy and writes (scale, apply) are sent now and then, heal every fault,
wait for convergence, read back the desired state and Docker's containers, check, clean up."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drover.chaos import iptables
from drover.chaos.checker import Checks, Container, Desired, History, Write, check, failed_spans, wrong_counts
from drover.chaos.inject import Injector, Undo
from drover.chaos.probe import Recorder, converged_at, first_converged_after, node_ready_after
from drover.chaos.report import FaultRecord
from drover.chaos.schedule import Planned, make_schedule
from drover.cli.client import Client, CliError
from drover.cli.context import Target
from drover.shared.tasks import Supervisor

SERVICE = "drover-chaos"
IMAGE = "local/busybox:latest"
OBSERVE_EVERY = 0.5
TRAFFIC_EVERY = 0.25  # per node
SETTLE_DEADLINE = 90.0  # s for the chaos service to come up before the clock starts
CONVERGE_DEADLINE = 60.0  # s after the run for everything to converge
STABLE_FOR = 3.0  # s of continuous convergence that ends the wait
INJECT_ATTEMPTS = 3


@dataclass
class ChaosOptions:
    duration: float
    seed: int
    kinds: list[str]
    interval: float
    image: str = IMAGE


@dataclass
class Outcome:
    faults: list[FaultRecord]
    checks: Checks
    notes: list[str] = field(default_factory=list)


def manifest(port: int, replicas: int, token: str, image: str) -> str:
    return f"""\
apiVersion: drover/v1
kind: Service
metadata: {{name: {SERVICE}}}
spec:
  image: {image}
  command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
  env: {{CHAOS_WRITE: "{token}"}}
  replicas: {replicas}
  ports: [{{name: http, container: 8080, expose: {port}}}]
  resources: {{cpu: 0.01, memory: 8Mi}}
  health:
    http: {{path: /, port: 8080}}
    interval: 1s
  stop_grace: 1s
  update: {{min_ready: 0s, progress_deadline: 120s, auto_rollback: false}}
"""


def free_port_on(addresses: list[str]) -> int:
    """A TCP port free on every agent address (each node's proxy listens there)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((addresses[0] if addresses else "127.0.0.1", 0))
            port: int = s.getsockname()[1]
        try:
            for a in addresses:
                with socket.socket() as t:
                    t.bind((a, port))
            return port
        except OSError:
            continue
    raise CliError("no TCP port is free on every agent address")


class Run:
    def __init__(self, opts: ChaosOptions, target: Target, state: Callable[[], dict[str, Any]]) -> None:
        self.opts = opts
        self.target = target
        self.state = state
        self.rng = random.Random(opts.seed)
        self.undo = Undo()
        self.writes: list[Write] = []
        self.faults: list[FaultRecord] = []
        self.notes: list[str] = []
        self.replicas = 3
        self.token = f"s{opts.seed}-w0"
        self.rec = Recorder(time.monotonic())
        self.c: Client | None = None
        self.docker: Any = None

    # ---------------------------------------------------------------- cluster I/O
    @property
    def client(self) -> Client:
        assert self.c is not None
        return self.c

    async def _poll(self) -> tuple[list[Any], list[Any]] | None:
        nodes = await self.client.call("get_nodes", {"name": None}, timeout=2.0)
        services = await self.client.call("get_services", {"name": None}, timeout=2.0)
        return nodes, services

    async def _leader(self) -> str | None:
        with contextlib.suppress(CliError):
            data = await self.client.call_new_verb("leader", {}, "leader", timeout=2.0)
            ident = (data or {}).get("id")
            return str(ident) if ident else None
        return None

    async def _containers(self, service: str | None = SERVICE) -> list[dict[str, Any]]:
        labels = [f"drover.cluster={self.target.cluster}"] + ([f"drover.service={service}"] if service else [])
        filters = json.dumps({"label": labels, "status": ["running"]})
        return [dict(c._container) for c in await self.docker.containers.list(filters=filters)]

    async def _replicas(self) -> list[tuple[str, str]]:
        out = []
        for c in await self._containers():
            out.append((_name(c), str(c["Id"])))
        return out

    async def _docker_kill(self, ident: str) -> None:
        await self.docker.containers.container(ident).kill()

    async def _apply(self, at: float, replicas: int, token: str, port: int) -> None:
        from drover.shared.manifest import parse_manifests

        [m] = parse_manifests([("chaos", manifest(port, replicas, token, self.opts.image))])
        body = {"manifests": [m.model_dump(mode="json")], "sources": ["chaos"]}
        await self._write(at, replicas, token, self.client.call("apply", body, timeout=10.0))

    async def _scale(self, at: float, replicas: int) -> None:
        await self._write(at, replicas, "", self.client.call("scale", {"name": SERVICE, "replicas": replicas}, 10.0))

    async def _write(self, at: float, replicas: int, token: str, call: Any) -> None:
        acked = False
        try:
            await call
            acked = True
        except CliError as exc:
            self.notes.append(f"write at {at:.1f}s not acknowledged: {exc}")
        self.writes.append(Write(at, SERVICE, replicas, token, acked))

    # ---------------------------------------------------------------- phases
    async def run(self, docker: Any) -> Outcome:
        self.docker = docker
        await iptables.sweep_stale()
        async with Client(self.target, keep_reconnecting=True) as c:
            self.c = c
            sup = Supervisor("chaos")
            try:
                return await self._run(sup)
            finally:
                await sup.stop()
                await self.undo.drain()
                await self._remove_service()

    async def _run(self, sup: Supervisor) -> Outcome:
        agents = [p for p in self.state().get("processes", []) if p.get("kind") == "agent"]
        before = {
            str(s["name"]): Desired(int(s["replicas"]), "")
            for s in await self.client.call("get_services", {"name": None})
            if s.get("name") != SERVICE
        }
        port = free_port_on([str(a["address"]) for a in agents])
        await self._apply(-1.0, self.replicas, self.token, port)
        await self._settle()
        self.rec = Recorder(time.monotonic())
        sup.start("observe", lambda: self.rec.watch(self._poll, OBSERVE_EVERY))
        for a in agents:
            node, address = str(a["node"]), str(a["address"])
            sup.start(f"traffic-{node}", self._traffic(node, address, port))
        schedule = make_schedule(self.opts.seed, self.opts.duration, self.opts.interval, self.opts.kinds)
        injector = Injector(
            rng=random.Random(self.opts.seed + 1), state=self.state, leader=self._leader,
            containers=self._replicas, docker_kill=self._docker_kill, undo=self.undo, tag=iptables.tag(),
        )
        writer = sup.start("writes", lambda: self._writes(port, schedule), restart=False)
        await self._faults(schedule, injector, sup)
        await asyncio.sleep(max(0.0, self.opts.duration - self.rec.now()))
        writer.cancel()
        await self.undo.drain()
        last_end = max((f.ends for f in self.faults), default=0.0)
        await self._converge()
        return await self._verdict(before, last_end)

    async def _settle(self) -> None:
        end = time.monotonic() + SETTLE_DEADLINE
        while time.monotonic() < end:
            with contextlib.suppress(CliError):
                [row] = await self.client.call("get_services", {"name": SERVICE}, timeout=3.0)
                if row.get("status") == "available" and row.get("running") == row.get("replicas"):
                    return
            await asyncio.sleep(0.5)
        raise CliError(f"the chaos service {SERVICE} did not become available within {SETTLE_DEADLINE:g}s")

    async def _faults(self, schedule: list[Planned], injector: Injector, sup: Supervisor) -> None:
        """Each fault at its time, in a task of its own: one that waits (a nats-kill until every server is
        current) delays neither the others nor the schedule (no burst of late faults after it)."""
        tasks = []
        for i, p in enumerate(schedule):
            await asyncio.sleep(max(0.0, p.at - self.rec.now()))
            tasks.append(sup.spawn(f"inject-{i}", self._inject(p, injector, sup)))
        await asyncio.gather(*tasks, return_exceptions=True)
        self.faults.sort(key=lambda f: f.at)

    async def _inject(self, p: Planned, injector: Injector, sup: Supervisor) -> None:
        got = None
        for attempt in range(INJECT_ATTEMPTS):  # e.g. no running replica at that instant: try again shortly
            at = self.rec.now()
            try:
                got = await injector.inject(p.kind, p.hold)
                at = self.rec.now()  # a nats-kill may have waited for the servers to be current
                break
            except Exception as exc:  # a failed injection is reported, the run goes on
                if attempt == INJECT_ATTEMPTS - 1:
                    self.notes.append(f"{p.kind} at {at:.1f}s not injected: {exc}")
                    return
                await asyncio.sleep(1.0)
        if got is None:
            return
        record = FaultRecord(at, got.kind, got.target, at + p.hold, got.cut_node)
        self.faults.append(record)
        if got.undo_key is not None:
            sup.spawn(f"heal-{len(self.faults)}", self._heal(record, got.undo_key, p.hold))

    async def _heal(self, record: FaultRecord, key: int, hold: float) -> None:
        await asyncio.sleep(max(0.0, record.at + hold - self.rec.now()))
        await self.undo.run(key)
        record.ends = self.rec.now()

    def _traffic(self, node: str, address: str, port: int) -> Callable[[], Awaitable[None]]:
        return lambda: self.rec.traffic(node, address, port, TRAFFIC_EVERY)

    async def _writes(self, port: int, schedule: list[Planned]) -> None:
        """Now and then a scale (2 to 4 replicas) or an apply of a changed spec, until the faults stop."""
        last = max((p.ends for p in schedule), default=self.opts.duration)
        n = 0
        while True:
            await asyncio.sleep(self.rng.uniform(5.0, 10.0))
            at = self.rec.now()
            if at > last:
                return
            n += 1
            if self.rng.random() < 0.7:
                self.replicas = self.rng.choice([2, 3, 4])
                await self._scale(at, self.replicas)
            else:
                self.token = f"s{self.opts.seed}-w{n}"
                await self._apply(at, self.replicas, self.token, port)

    async def _converge(self) -> None:
        end = time.monotonic() + CONVERGE_DEADLINE
        while time.monotonic() < end:
            obs = self.rec.observations
            recent = [o for o in obs if o.at >= self.rec.now() - STABLE_FOR]
            # Converged once the cluster's view has been steady and Docker's agrees with it: a replica the
            # controller already counts as gone may still be stopping (its stop_grace) for a moment.
            if len(recent) >= 3 and all(o.converged for o in recent) and await self._docker_agrees():
                return
            await asyncio.sleep(OBSERVE_EVERY)
        self.notes.append(f"the cluster did not converge within {CONVERGE_DEADLINE:g}s after the run")

    async def _docker_agrees(self) -> bool:
        """Docker runs exactly each service's desired number of containers (by labels)."""
        try:
            rows = await self.client.call("get_services", {"name": None}, timeout=3.0)
            desired = {str(r["name"]): Desired(int(r["replicas"]), "") for r in rows}
            running = [Container(str((c.get("Labels") or {}).get("drover.service", "")), "", "", "")
                       for c in await self._containers(None)]
        except Exception:  # unknown right now: not yet
            return False
        return not wrong_counts(running, desired)

    async def _verdict(self, before: dict[str, Desired], last_end: float) -> Outcome:
        obs = list(self.rec.observations)
        after: dict[str, Desired] = {}
        for s in await self.client.call("get_services", {"name": None}):
            after[str(s["name"])] = Desired(int(s["replicas"]), "")
        if SERVICE in after:
            described = await self.client.call("describe_service", {"name": SERVICE})
            env = ((described or {}).get("spec") or {}).get("env") or {}
            after[SERVICE] = Desired(after[SERVICE].replicas, str(env.get("CHAOS_WRITE", "")))
        containers = [
            Container(
                str(labels.get("drover.service", "")), str(labels.get("drover.id", "")),
                str(labels.get("drover.node", "")), _name(c),
            )
            for c in await self._containers(None)
            for labels in [c.get("Labels") or {}]
        ]
        cut: dict[str, list[tuple[float, float]]] = {}
        for f in self.faults:
            f.recovery_s = _minus(first_converged_after(obs, f.ends), f.ends)
            if f.cut_node:
                # Ready again on a heartbeat sent after the kill or the heal: the restarted agent's (which
                # heartbeats only once its proxy and gossip run), or the healed one's.
                until = node_ready_after(obs, f.cut_node, f.ends)
                cut.setdefault(f.cut_node, []).append((f.at, until if until is not None else self.rec.now()))
        services = sorted({name for o in obs for name in o.services})
        history = History(
            writes=self.writes, desired_before=before, desired_after=after, containers=containers,
            requests=list(self.rec.requests), cut_off=cut, last_fault_end=last_end,
            converged_at={s: converged_at(obs, s, last_end) for s in services},
            observed_until=obs[-1].at if obs else 0.0,
        )
        self.notes += self.undo.errors + failed_spans(history.requests, cut)
        _trace(history, obs, self.faults)
        if obs and not obs[-1].converged:
            last = obs[-1]
            self.notes.append(
                "at the end: nodes not ready: " + (", ".join(n for n, ok in last.nodes.items() if not ok) or "none")
                + "; services not converged: " + (", ".join(s for s, ok in last.services.items() if not ok) or "none")
            )
        return Outcome(self.faults, check(history), self.notes)

    async def _remove_service(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.request_raw("delete", {"names": [SERVICE]}, timeout=10.0)
        end = time.monotonic() + 30.0
        while time.monotonic() < end:
            with contextlib.suppress(Exception):
                if not await self._containers():
                    return
            await asyncio.sleep(0.5)


def _trace(history: History, obs: list[Any], faults: list[FaultRecord]) -> None:
    """With ``DROVER_CHAOS_TRACE=FILE``, the run's raw history as JSON (faults, writes, every observation
    that was not converged, failed requests, cut-off windows): what a slow recovery is read from."""
    path = os.environ.get("DROVER_CHAOS_TRACE")
    if not path:
        return
    data = {
        "faults": [dataclasses.asdict(f) for f in faults],
        "writes": [dataclasses.asdict(w) for w in history.writes],
        "unconverged": [
            {"at": round(o.at, 2), "nodes": sorted(n for n, ok in o.nodes.items() if not ok),
             "services": sorted(s for s, ok in o.services.items() if not ok)}
            for o in obs if not o.converged
        ],
        "observations": len(obs),
        "failed_requests": [dataclasses.asdict(r) for r in history.requests if not r.ok],
        "cut_off": history.cut_off,
    }
    with contextlib.suppress(OSError):
        Path(path).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def _name(container: dict[str, Any]) -> str:
    return str((container.get("Names") or [container.get("Id", "?")])[0]).lstrip("/")


def _minus(a: float | None, b: float) -> float | None:
    return None if a is None else round(max(0.0, a - b), 2)


def load_state(path: Path, cluster: str) -> Callable[[], dict[str, Any]]:
    """A reader of the lab's current state (pids change as processes restart)."""
    from drover.cli.lab import read_state

    def read() -> dict[str, Any]:
        state = read_state(path)
        if state is None:
            raise CliError(f"no running 'drover up' lab found ({path} is missing or its drover up is gone)")
        if state.get("cluster") != cluster:
            raise CliError(f"the lab in {path} runs cluster '{state.get('cluster')}', not '{cluster}'")
        return state

    return read


__all__ = ["ChaosOptions", "Outcome", "Run", "load_state", "manifest"]
