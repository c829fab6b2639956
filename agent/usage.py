"""Usage measurements for autoscaling: per-container CPU and memory, per-service request rate.

- **CPU / memory**: one task per running container of a service with an ``autoscale`` section reads
  Docker's stats *stream* (``container.stats(stream=True)``, a sample a second; the one-shot variant
  takes 1-2 s per call). CPU % is the cpu time used over the last ``WINDOW`` seconds divided by the cpu
  request (0.25 cpu fully used = 100 %); memory % is the working set (usage minus inactive file cache, as
  ``docker stats`` shows it) of the memory request. The first sample of a stream is skipped (it includes
  the start-up), a stream that ends or fails is re-opened with back-off while the container runs, and a
  task is started and stopped with its container (``sync``, from the agent's status listener; keyed by
  container id and start time, so an in-place restart gets a fresh stream). Drivers other than Docker
  report nothing.
- **Request rate**: new connections per second through this node's proxy, per service (the ``connections``
  counter of ``NodeProxy.stats``, every proxy key ``NAME`` / ``NAME:PORT`` summed under ``NAME``),
  measured over the last ``WINDOW`` seconds when a heartbeat is built.

``fill(heartbeat, discovery)`` puts both into a heartbeat (``ContainerStatus.cpu_percent`` /
``memory_percent``, ``Heartbeat.service_rps``).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from drover.agent.drivers.base import Driver
from drover.agent.drivers.docker import DockerDriver
from drover.agent.drivers.dockerview import parse_time
from drover.shared.manifest import ServiceSpec
from drover.shared.models import Assignment, ContainerState, ContainerStatus, Heartbeat
from drover.shared.tasks import cancel_all

if TYPE_CHECKING:
    from drover.agent.proxy import ProxyStats

log = structlog.get_logger("drover.agent.usage")

WINDOW = 5.0  # seconds of samples averaged
STALE = 5.0  # a container's figures older than this are not reported

StatsSource = Callable[[str], AsyncIterator[dict[str, Any]]]
Spawn = Callable[[str, Coroutine[Any, Any, None]], asyncio.Task[Any]]


def _positive(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
        return None
    return float(v)


def requests_of(spec: ServiceSpec) -> tuple[float | None, float | None]:
    """(cpu cores, memory bytes) requested by a spec; None where not set."""
    return _positive(spec.resources.cpu), _positive(spec.resources.memory)


def cpu_point(stats: Mapping[str, Any]) -> tuple[float, float] | None:
    """(time in s, cumulative cpu seconds) of one Docker stats sample."""
    cpu = stats.get("cpu_stats") or {}
    total = (cpu.get("cpu_usage") or {}).get("total_usage")
    t = parse_time(stats.get("read"))
    if not isinstance(total, int | float) or t is None:
        return None
    return t, float(total) / 1e9


def working_set(stats: Mapping[str, Any]) -> float | None:
    """Memory in use without the inactive file cache (cgroup v1 ``total_inactive_file``, v2 ``inactive_file``)."""
    mem = stats.get("memory_stats") or {}
    usage = mem.get("usage")
    if not isinstance(usage, int | float):
        return None
    extra = mem.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):
        v = extra.get(key)
        if isinstance(v, int | float) and 0 <= v < usage:
            return float(usage - v)
    return float(usage)


@dataclass
class ContainerUsage:
    cpu_request: float | None
    memory_request: float | None
    points: collections.deque[tuple[float, float]] = field(default_factory=collections.deque)
    memory: float | None = None
    updated: float = 0.0  # monotonic time of the last sample

    def add(self, stats: Mapping[str, Any], now: float) -> None:
        p = cpu_point(stats)
        if p is not None:
            if self.points and (p[0] <= self.points[-1][0] or p[1] < self.points[-1][1]):
                self.points.clear()  # clock or counter went back: start over
            self.points.append(p)
            while len(self.points) > 2 and self.points[-1][0] - self.points[1][0] >= WINDOW:
                self.points.popleft()
        self.memory = working_set(stats)
        self.updated = now

    def cpu_percent(self) -> float | None:
        if self.cpu_request is None or len(self.points) < 2:
            return None
        (t0, c0), (t1, c1) = self.points[0], self.points[-1]
        if t1 <= t0:
            return None
        return round((c1 - c0) / (t1 - t0) / self.cpu_request * 100.0, 1)

    def memory_percent(self) -> float | None:
        if self.memory_request is None or self.memory is None:
            return None
        return round(self.memory / self.memory_request * 100.0, 1)


def _autoscaled(spec: ServiceSpec) -> bool:
    return spec.autoscale is not None


class RateMeter:
    """New connections per second per service from the proxy's cumulative counters."""

    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self._points: collections.deque[tuple[float, dict[str, int]]] = collections.deque()

    def rates(self, stats: Mapping[str, ProxyStats], now: float) -> dict[str, float]:
        counts: dict[str, int] = {}
        for key, s in stats.items():
            service = key.split(":", 1)[0]
            counts[service] = counts.get(service, 0) + s.connections
        while len(self._points) > 1 and now - self._points[1][0] >= self.window:
            self._points.popleft()
        out: dict[str, float] = {}
        if self._points:
            t0, old = self._points[0]
            dt = now - t0
            if dt > 0:
                for service, n in counts.items():
                    before = old.get(service, 0)  # a proxy opened since then counted from 0
                    if n >= before:  # a counter that went back (a re-created proxy) waits a round
                        out[service] = round((n - before) / dt, 3)
        self._points.append((now, counts))
        return out


class UsageCollector:
    def __init__(
        self,
        driver: Driver,
        *,
        spawn: Spawn | None = None,
        source: StatsSource | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._spawn = spawn
        self._source = source if source is not None else _docker_source(driver)
        self._clock = clock
        self._tasks: dict[str, tuple[tuple[float | None, float | None, float | None], asyncio.Task[Any]]] = {}
        self._usage: dict[str, ContainerUsage] = {}
        self.rate = RateMeter()

    # --- per-container streams ------------------------------------------------------------------
    def sync(self, assignment: Assignment | None, statuses: Sequence[ContainerStatus]) -> None:
        """Stream the stats of exactly the running containers of autoscaled services."""
        specs = {a.id: a.spec for a in assignment.containers} if assignment is not None else {}
        wanted: dict[str, tuple[float | None, float | None, float | None]] = {}
        if self._source is not None:
            for s in statuses:
                spec = specs.get(s.id)
                running = s.state in (ContainerState.RUNNING, ContainerState.CRASH_LOOP) and s.container_id
                if spec is None or not running or not _autoscaled(spec):
                    continue
                wanted[s.container_id] = (s.started_at, *requests_of(spec))
        for cid in list(self._tasks):
            key, task = self._tasks[cid]
            if wanted.get(cid) != key:
                task.cancel()
                del self._tasks[cid]
                self._usage.pop(cid, None)
        for cid, key in wanted.items():
            if cid in self._tasks:
                continue
            usage = ContainerUsage(cpu_request=key[1], memory_request=key[2])
            self._usage[cid] = usage
            name = f"usage:{cid[:12]}"
            coro = self._stream(cid, usage)
            task = self._spawn(name, coro) if self._spawn else asyncio.get_running_loop().create_task(coro, name=name)
            self._tasks[cid] = (key, task)

    async def _stream(self, cid: str, usage: ContainerUsage) -> None:
        assert self._source is not None
        delay = 0.5
        while True:
            first = True
            try:
                async for stats in self._source(cid):
                    if first:  # covers the start-up (and the time before the cpu quota applies)
                        first = False
                        continue
                    usage.add(stats, self._clock())
                    delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("stats stream failed; reopening", container=cid[:12], error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def streaming(self) -> list[str]:
        """Container ids with a stats stream (for tests and debugging)."""
        return list(self._tasks)

    async def stop(self) -> None:
        await cancel_all([t for _, t in self._tasks.values()])
        self._tasks.clear()
        self._usage.clear()

    # --- reporting ------------------------------------------------------------------------------
    def annotate(self, statuses: Sequence[ContainerStatus]) -> list[ContainerStatus]:
        now = self._clock()
        out: list[ContainerStatus] = []
        for s in statuses:
            u = self._usage.get(s.container_id) if s.container_id else None
            if u is None or now - u.updated > STALE:
                out.append(s)
            else:
                out.append(s.model_copy(update={"cpu_percent": u.cpu_percent(), "memory_percent": u.memory_percent()}))
        return out

    def fill(self, hb: Heartbeat, proxy_stats: Mapping[str, ProxyStats] | None) -> Heartbeat:
        """The heartbeat with the containers' usage and this node's request rates (``proxy_stats``: the
        per-node proxy's counters by service; None without a proxy)."""
        rps = self.rate.rates(proxy_stats, self._clock()) if proxy_stats is not None else {}
        return hb.model_copy(update={"containers": self.annotate(hb.containers), "service_rps": rps})


def _docker_source(driver: Driver) -> StatsSource | None:
    if not isinstance(driver, DockerDriver):
        return None

    async def stream(cid: str) -> AsyncIterator[dict[str, Any]]:
        async for stats in driver.docker.containers.container(cid).stats(stream=True):
            if isinstance(stats, dict):
                yield stats

    return stream
