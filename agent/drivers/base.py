"""The driver interface: what the agent needs from a container runtime.

A driver only sees the containers of its own cluster and node. Container ids (``container_id``) are the
runtime's own; replica ids (``Observed.id``) are drover's (the ``drover.id`` label).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from drover.shared.errors import PermanentError, TemporaryError
from drover.shared.manifest import ServiceSpec
from drover.shared.models import AssignedContainer

# Observed.state values (the runtime's view, not drover's ContainerState).
CREATED = "created"
RUNNING = "running"
EXITED = "exited"


@dataclass
class Observed:
    """One container as the runtime reports it."""

    id: str  # replica id (drover.id)
    container_id: str
    name: str
    service: str
    revision: int
    state: str  # created | running | exited
    exit_code: int | None = None
    started_at: float | None = None  # unix time of the last start
    finished_at: float | None = None  # unix time of the last exit
    oom: bool = False
    port_map: dict[int, int] = field(default_factory=dict)  # container port -> host port
    host_network: bool = False

    @property
    def running(self) -> bool:
        return self.state == RUNNING


@dataclass(frozen=True)
class DriverEvent:
    id: str  # replica id
    kind: str  # start | die | oom | destroy
    container_id: str
    exit_code: int | None = None
    service: str = ""  # from the container's label, when the event carries it


class ImageMissing(PermanentError):
    """The image is not on the host (and could not be pulled)."""

    def __init__(self, image: str, why: str = "not found"):
        self.image = image
        super().__init__(f"image {image} {why}")


class DriverError(TemporaryError):
    """The runtime refused or failed an operation; worth retrying later."""


class Driver(Protocol):
    name: str

    async def list(self) -> list[Observed]:
        """Every container of this cluster and node, running or not."""
        ...

    async def create_and_start(self, assigned: AssignedContainer, address: str) -> Observed: ...

    async def restart(self, container_id: str, cpu: float | None = None) -> Observed:
        """Start an exited container again, in place."""
        ...

    async def stop(self, container_id: str, grace: float) -> None: ...

    async def remove(self, container_id: str) -> None: ...

    def events(self) -> AsyncIterator[DriverEvent]:
        """Container lifecycle events; ends (or raises) when the runtime connection drops."""
        ...

    def logs(self, container_id: str, tail: int | None, follow: bool) -> AsyncIterator[str]:
        """Log lines (without the trailing newline)."""
        ...

    async def exec(self, container_id: str, command: Sequence[str], timeout: float) -> int:
        """Run a command inside the container; its exit code."""
        ...

    async def close(self) -> None: ...


def spec_ports(spec: ServiceSpec) -> list[tuple[str, int]]:
    """(name, container port) of the spec's ports, in order; the name defaults to str(port)."""
    return [(p.name or str(p.container), p.container) for p in spec.ports]


def exposed_ports(spec: ServiceSpec) -> list[tuple[int, str, int]]:
    """(index, port name, expose port) of the spec's ports that the per-node proxy exposes, in order; the name
    defaults to the container port."""
    return [(i, p.name or str(p.container), p.expose) for i, p in enumerate(spec.ports) if p.expose is not None]


def health_port(spec: ServiceSpec) -> int | None:
    return spec.health.probe_port() if spec.health is not None else None


def published_ports(spec: ServiceSpec) -> list[int]:
    """Container ports to publish: the spec's ports plus a health-check port not listed among them."""
    ports = [p for _, p in spec_ports(spec)]
    hp = health_port(spec)
    if hp is not None and hp not in ports:
        ports.append(hp)
    return ports


def host_network(spec: ServiceSpec) -> bool:
    return spec.network == "host"


def container_name(service: str, replica_id: str) -> str:
    return f"drover-{service}-{replica_id}"


def spec_env(spec: ServiceSpec) -> dict[str, str]:
    return dict(spec.env)


def spec_command(spec: ServiceSpec) -> list[str] | None:
    return list(spec.command) if spec.command else None


class EventFanout:
    """In-process drivers' event stream: every ``events()`` iterator gets each emitted event; ``close()`` ends
    them all."""

    def __init__(self) -> None:
        self._subscribers: list[asyncio.Queue[DriverEvent | None]] = []

    def emit(self, ev: DriverEvent) -> None:
        for q in self._subscribers:
            q.put_nowait(ev)

    async def events(self) -> AsyncIterator[DriverEvent]:
        q: asyncio.Queue[DriverEvent | None] = asyncio.Queue()
        self._subscribers.append(q)
        try:
            while True:
                ev = await q.get()
                if ev is None:
                    return
                yield ev
        finally:
            self._subscribers.remove(q)

    def close(self) -> None:
        for q in self._subscribers:
            q.put_nowait(None)
