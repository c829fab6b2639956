"""Simulated driver: hollow in-memory containers that are running the moment they are created.

For scale tests and benchmarks with many agents in one process. Host ports are fake (unique per driver
instance, nothing listens on them). ``crash()`` makes a container exit, as a test would need.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Sequence

from drover.agent.drivers.base import (
    EXITED,
    RUNNING,
    DriverError,
    DriverEvent,
    EventFanout,
    Observed,
    container_name,
    host_network,
    published_ports,
)
from drover.shared.models import AssignedContainer

_ports = itertools.count(40000)


class SimDriver:
    name = "sim"

    def __init__(self, cluster: str, node: str):
        self.cluster = cluster
        self.node = node
        self.containers: dict[str, Observed] = {}
        self.logs_of: dict[str, list[str]] = {}
        self._fanout = EventFanout()
        self._exited: dict[str, asyncio.Event] = {}

    def _emit(self, ev: DriverEvent) -> None:
        self._fanout.emit(ev)

    async def list(self) -> list[Observed]:
        return [Observed(**vars(o)) for o in self.containers.values()]

    async def create_and_start(self, assigned: AssignedContainer, address: str) -> Observed:
        cid = uuid.uuid4().hex
        spec = assigned.spec
        hostnet = host_network(spec)
        ports = {p: (p if hostnet else next(_ports) % 65535 or 1) for p in published_ports(spec)}
        obs = Observed(
            id=assigned.id,
            container_id=cid,
            name=container_name(assigned.service, assigned.id),
            service=assigned.service,
            revision=assigned.revision,
            state=RUNNING,
            started_at=time.time(),
            port_map=ports,
            host_network=hostnet,
        )
        self.containers[cid] = obs
        self.logs_of[cid] = [f"{obs.name} started"]
        self._emit(DriverEvent(obs.id, "start", cid))
        return Observed(**vars(obs))

    def _get(self, container_id: str) -> Observed:
        obs = self.containers.get(container_id)
        if obs is None:
            raise DriverError(f"no such container {container_id}")
        return obs

    async def restart(self, container_id: str, cpu: float | None = None) -> Observed:
        obs = self._get(container_id)
        if obs.state != RUNNING:
            obs.state, obs.started_at, obs.exit_code, obs.finished_at = RUNNING, time.time(), None, None
            if not obs.host_network:
                obs.port_map = {p: next(_ports) % 65535 or 1 for p in obs.port_map}
            self._emit(DriverEvent(obs.id, "start", container_id))
        return Observed(**vars(obs))

    def crash(self, container_id: str, exit_code: int = 1) -> None:
        obs = self._get(container_id)
        if obs.state == RUNNING:
            obs.state, obs.exit_code, obs.finished_at = EXITED, exit_code, time.time()
            self._exited.pop(container_id, asyncio.Event()).set()
            self._emit(DriverEvent(obs.id, "die", container_id, exit_code))

    async def stop(self, container_id: str, grace: float) -> None:
        if container_id in self.containers:
            self.crash(container_id, 143 if grace > 0 else 137)

    async def remove(self, container_id: str) -> None:
        obs = self.containers.pop(container_id, None)
        self.logs_of.pop(container_id, None)
        self._exited.pop(container_id, asyncio.Event()).set()
        if obs is not None:
            self._emit(DriverEvent(obs.id, "destroy", container_id))

    def events(self) -> AsyncIterator[DriverEvent]:
        return self._fanout.events()

    async def logs(self, container_id: str, tail: int | None, follow: bool) -> AsyncIterator[str]:
        lines = list(self.logs_of.get(container_id, []))
        for line in lines[-tail:] if tail else ([] if tail == 0 else lines):
            yield line
        if follow:
            obs = self.containers.get(container_id)
            if obs is not None and obs.state == RUNNING:
                await self._exited.setdefault(container_id, asyncio.Event()).wait()

    async def exec(self, container_id: str, command: Sequence[str], timeout: float) -> int:
        return 0 if self._get(container_id).state == RUNNING else 1

    async def close(self) -> None:
        self._fanout.close()
