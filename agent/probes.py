"""Health probes run by the agent against its own containers.

- http: ``GET http://<address>:<published port><path>``; a 2xx/3xx status passes. docker-proxy accepts a
  connection even when nothing listens inside the container and then resets it, so a reset or an empty
  reply is a failure.
- tcp: connect, and the peer must not close or reset the connection right away (same docker-proxy reason).
- exec: run the command in the container (``Driver.exec``); exit code 0 passes.

A ``ProbeManager`` keeps one probe task per running container that has a ``health`` section; after
``failure_threshold`` consecutive failures it calls ``on_failure`` (the agent kills the container and its
restart policy applies).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from drover.agent.drivers.base import Driver, Observed
from drover.agent.drivers.lines import read_line
from drover.shared.manifest import ServiceSpec
from drover.shared.models import AssignedContainer
from drover.shared.tasks import cancel_all

log = structlog.get_logger("drover.agent.probes")

TCP_SETTLE = 0.15  # how long a tcp-probed peer must keep the connection open
STATUS_LINE_LIMIT = 8 * 1024  # an HTTP status line longer than this fails the probe (headers are never read)


@dataclass(frozen=True)
class ProbeSpec:
    kind: str  # http | tcp | exec
    port: int | None = None
    path: str = "/"
    command: tuple[str, ...] = ()
    interval: float = 10.0
    timeout: float = 1.0
    failure_threshold: int = 3
    initial_delay: float = 0.0


def probe_spec(spec: ServiceSpec) -> ProbeSpec | None:
    """The probe described by ``spec.health``; None when there is none."""
    h = spec.health
    if h is None:
        return None
    common: dict[str, Any] = {
        # floors: a probe every few milliseconds would be a busy loop, not a health check
        "interval": max(0.05, h.interval),
        "timeout": max(0.05, h.timeout),
        "failure_threshold": h.failure_threshold,
        "initial_delay": h.initial_delay,
    }
    if h.http is not None:
        return ProbeSpec("http", port=h.http.port, path=h.http.path, **common)
    if h.tcp is not None:
        return ProbeSpec("tcp", port=h.tcp.port, **common)
    if h.exec is not None:
        return ProbeSpec("exec", command=tuple(h.exec.command), **common)
    return None


async def check_http(host: str, port: int, path: str, timeout: float) -> tuple[bool, str]:
    async def run() -> tuple[bool, str]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(
                f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: drover-probe\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            await writer.drain()
            line, cut = await read_line(reader, STATUS_LINE_LIMIT)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        if cut:
            return False, f"http {host}:{port}{path}: status line over {STATUS_LINE_LIMIT} bytes"
        if not line:
            return False, f"http {host}:{port}{path}: empty reply"
        parts = line.decode("latin-1").split()
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            return False, f"http {host}:{port}{path}: not an HTTP reply"
        code = int(parts[1])
        if 200 <= code < 400:
            return True, ""
        return False, f"http {host}:{port}{path}: status {code}"

    try:
        return await asyncio.wait_for(run(), timeout)
    except TimeoutError:
        return False, f"http {host}:{port}{path}: timed out after {timeout:g}s"
    except OSError as exc:
        return False, f"http {host}:{port}{path}: {exc.strerror or type(exc).__name__}"


async def check_tcp(host: str, port: int, timeout: float) -> tuple[bool, str]:
    async def run() -> tuple[bool, str]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            try:
                data = await asyncio.wait_for(reader.read(1), min(TCP_SETTLE, timeout / 2))
            except TimeoutError:
                return True, ""  # the peer holds the connection open
            if data:
                return True, ""
            return False, f"tcp {host}:{port}: closed by the peer"
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    try:
        return await asyncio.wait_for(run(), timeout)
    except TimeoutError:
        return False, f"tcp {host}:{port}: timed out after {timeout:g}s"
    except OSError as exc:
        return False, f"tcp {host}:{port}: {exc.strerror or type(exc).__name__}"


async def check_exec(driver: Driver, container_id: str, command: Sequence[str], timeout: float) -> tuple[bool, str]:
    try:
        code = await driver.exec(container_id, command, timeout)
    except TimeoutError:
        return False, f"exec {' '.join(command)}: timed out after {timeout:g}s"
    except Exception as exc:
        return False, f"exec {' '.join(command)}: {exc}"
    return (True, "") if code == 0 else (False, f"exec {' '.join(command)}: exit code {code}")


def probe_target(probe: ProbeSpec, obs: Observed, address: str) -> tuple[str, int] | None:
    """Where an http/tcp probe connects: the published port on the agent's address, or the container port
    on 127.0.0.1 for host networking."""
    if probe.port is None:
        return None
    if obs.host_network:  # the process driver maps a named port to a port of its own (DROVER_PORT_<NAME>)
        return "127.0.0.1", obs.port_map.get(probe.port, probe.port)
    host_port = obs.port_map.get(probe.port)
    return (address, host_port) if host_port else None


async def run_probe(driver: Driver, probe: ProbeSpec, obs: Observed, address: str) -> tuple[bool, str]:
    if probe.kind == "exec":
        return await check_exec(driver, obs.container_id, probe.command, probe.timeout)
    target = probe_target(probe, obs, address)
    if target is None:
        return False, f"port {probe.port} is not published"
    if probe.kind == "http":
        return await check_http(target[0], target[1], probe.path, probe.timeout)
    return await check_tcp(target[0], target[1], probe.timeout)


OnChange = Callable[[], None]
OnFailure = Callable[[AssignedContainer, Observed, str], Awaitable[None]]
OnMiss = Callable[[AssignedContainer, Observed, str], None]


class ProbeManager:
    """One probe task per (container id, start time) of a running container with a health section."""

    def __init__(
        self,
        driver: Driver,
        address: str,
        *,
        on_change: OnChange,
        on_failure: OnFailure,
        on_miss: OnMiss | None = None,
        spawn: Callable[[str, Coroutine[Any, Any, None]], asyncio.Task[Any]] | None = None,
    ):
        self.driver = driver
        self.address = address
        self.on_change = on_change
        self.on_failure = on_failure
        self.on_miss = on_miss
        self._spawn = spawn
        self._tasks: dict[str, tuple[tuple[float | None, int], asyncio.Task[Any]]] = {}
        self._ok: dict[str, bool] = {}

    def result(self, container_id: str) -> bool | None:
        return self._ok.get(container_id)

    def sync(self, targets: Sequence[tuple[AssignedContainer, Observed]]) -> None:
        """Probe exactly these running containers (each with its assignment)."""
        wanted: dict[str, tuple[AssignedContainer, Observed, ProbeSpec]] = {}
        for a, obs in targets:
            p = probe_spec(a.spec)
            if p is not None and obs.running:
                wanted[obs.container_id] = (a, obs, p)
        for cid in list(self._tasks):
            key, task = self._tasks[cid]
            w = wanted.get(cid)
            if w is None or key != (w[1].started_at, w[1].port_map.get(w[2].port or 0, 0)):
                task.cancel()
                del self._tasks[cid]
                self._ok.pop(cid, None)
        for cid, (a, obs, p) in wanted.items():
            if cid in self._tasks:
                continue
            key = (obs.started_at, obs.port_map.get(p.port or 0, 0))
            name = f"probe:{cid[:12]}"
            coro = self._loop(a, obs, p)
            task = self._spawn(name, coro) if self._spawn else asyncio.get_running_loop().create_task(coro, name=name)
            self._tasks[cid] = (key, task)

    async def _loop(self, a: AssignedContainer, obs: Observed, p: ProbeSpec) -> None:
        cid = obs.container_id
        blog = log.bind(service=a.service, container=a.id)
        try:
            if p.initial_delay > 0:
                await asyncio.sleep(p.initial_delay)
            failures = 0
            while True:
                try:
                    ok, why = await run_probe(self.driver, p, obs, self.address)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # whatever the peer did, it is a failed probe, not a dead loop
                    ok, why = False, f"{p.kind} probe error: {exc!r}"
                if ok:
                    failures = 0
                else:
                    failures += 1
                    blog.info("probe failed", reason=why, failures=failures)
                    if self.on_miss is not None:
                        self.on_miss(a, obs, why)
                if self._ok.get(cid) != ok:
                    self._ok[cid] = ok
                    self.on_change()
                if failures >= p.failure_threshold:
                    await self.on_failure(a, obs, f"{why} ({failures} consecutive failures)")
                    return
                await asyncio.sleep(p.interval)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a probe must never take the agent down
            blog.error("probe loop crashed", error=repr(exc))

    async def stop(self) -> None:
        await cancel_all([t for _, t in self._tasks.values()])
        self._tasks.clear()
        self._ok.clear()
