"""Process driver: runs a service's ``command`` as a plain subprocess, for hosts without Docker.

Each replica is one process (its own session, env from the spec on top of the agent's). There is no
isolation: no image, no resource limits, no mounts (``volumes`` and ``files`` are refused). A named port gets
a free host port per replica, in env ``DROVER_PORT_<NAME>``, and that is the replica's endpoint; the command
must listen there. Unnamed ports map to themselves (like ``network: host``). Processes cannot be adopted by a
later agent: they are stopped when the driver closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from drover.agent.drivers.base import (
    EXITED,
    RUNNING,
    DriverError,
    DriverEvent,
    EventFanout,
    ImageMissing,
    Observed,
    container_name,
    published_ports,
    spec_command,
    spec_env,
)
from drover.agent.drivers.lines import reader_chunks, text_lines
from drover.shared.manifest import ServiceSpec
from drover.shared.models import AssignedContainer

LOG_LINES = 1000


def named_ports(spec: ServiceSpec) -> list[tuple[str, int]]:
    """(name, port) of the spec's ports that have a name."""
    return [(p.name, p.container) for p in spec.ports if p.name is not None]


def free_port(address: str) -> int:
    """A TCP port nothing listens on at ``address`` right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, 0))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _Proc:
    obs: Observed
    command: list[str]
    env: dict[str, str]
    proc: asyncio.subprocess.Process | None = None
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    reader: asyncio.Task[None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    total: int = 0  # lines ever read


class ProcessDriver:
    name = "process"

    def __init__(self, cluster: str, node: str):
        self.cluster = cluster
        self.node = node
        self._procs: dict[str, _Proc] = {}
        self._fanout = EventFanout()
        self._seq = 0

    def _emit(self, ev: DriverEvent) -> None:
        self._fanout.emit(ev)

    async def list(self) -> list[Observed]:
        return [Observed(**vars(p.obs)) for p in self._procs.values()]

    async def create_and_start(self, assigned: AssignedContainer, address: str) -> Observed:
        if assigned.spec.volumes or assigned.spec.files:
            raise DriverError("the process driver cannot mount volumes or files (no mount namespace): use docker")
        command = spec_command(assigned.spec)
        if command is None:
            raise ImageMissing(f"{assigned.spec.image} (the process driver needs a command)")
        self._seq += 1
        cid = f"proc-{os.getpid()}-{self._seq}"
        ports = {p: p for p in published_ports(assigned.spec)}
        port_env = {}
        for name, cport in named_ports(assigned.spec):
            # Why: replicas on one host would collide on a fixed port; each gets its own, told through env.
            ports[cport] = free_port(address)
            port_env[f"DROVER_PORT_{name.upper().replace('-', '_')}"] = str(ports[cport])
        obs = Observed(
            id=assigned.id,
            container_id=cid,
            name=container_name(assigned.service, assigned.id),
            service=assigned.service,
            revision=assigned.revision,
            state=EXITED,
            port_map=ports,
            host_network=True,
        )
        p = _Proc(obs, command, {**os.environ, **spec_env(assigned.spec), **port_env})
        self._procs[cid] = p
        return await self._spawn(p)

    async def _spawn(self, p: _Proc) -> Observed:
        try:
            p.proc = await asyncio.create_subprocess_exec(
                *p.command,
                env=p.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise DriverError(f"cannot run {p.command[0]}: {exc.strerror or exc}") from exc
        p.obs.state, p.obs.started_at, p.obs.exit_code, p.obs.finished_at = RUNNING, time.time(), None, None
        p.reader = asyncio.get_running_loop().create_task(self._read(p, p.proc), name=f"proc:{p.obs.id}")
        self._emit(DriverEvent(p.obs.id, "start", p.obs.container_id))
        return Observed(**vars(p.obs))

    async def _read(self, p: _Proc, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        # Bounded: a line over MAX_LINE is cut, not a ValueError that would end this reader (and the exit
        # bookkeeping after it) for good.
        async for line in text_lines(reader_chunks(proc.stdout)):
            p.lines.append(line)
            p.total += 1
            p.changed.set()
        code = await proc.wait()
        p.obs.state, p.obs.exit_code, p.obs.finished_at = EXITED, code if code >= 0 else 128 - code, time.time()
        p.changed.set()
        self._emit(DriverEvent(p.obs.id, "die", p.obs.container_id, p.obs.exit_code))

    def _get(self, container_id: str) -> _Proc:
        p = self._procs.get(container_id)
        if p is None:
            raise DriverError(f"no such process {container_id}")
        return p

    async def restart(self, container_id: str, cpu: float | None = None) -> Observed:
        p = self._get(container_id)
        if p.obs.state == RUNNING:
            return Observed(**vars(p.obs))
        return await self._spawn(p)

    async def stop(self, container_id: str, grace: float) -> None:
        p = self._procs.get(container_id)
        if p is None or p.proc is None or p.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.proc.pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        try:
            await asyncio.wait_for(p.proc.wait(), grace if grace > 0 else 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.proc.pid, signal.SIGKILL)
            await p.proc.wait()
        if p.reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(p.reader, 2)

    async def remove(self, container_id: str) -> None:
        if container_id in self._procs:
            await self.stop(container_id, 0)
            p = self._procs.pop(container_id)
            self._emit(DriverEvent(p.obs.id, "destroy", container_id))

    def events(self) -> AsyncIterator[DriverEvent]:
        return self._fanout.events()

    async def logs(self, container_id: str, tail: int | None, follow: bool) -> AsyncIterator[str]:
        p = self._get(container_id)
        lines = list(p.lines)
        seen = p.total
        for line in lines[-tail:] if tail else ([] if tail == 0 else lines):
            yield line
        while follow:
            p.changed.clear()
            fresh = p.total - seen
            if fresh > 0:
                for line in list(p.lines)[-fresh:]:
                    yield line
                seen += fresh
            elif p.obs.state != RUNNING:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(p.changed.wait(), 1.0)

    async def exec(self, container_id: str, command: Sequence[str], timeout: float) -> int:
        p = self._get(container_id)
        proc = await asyncio.create_subprocess_exec(
            *command,
            env=p.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            return await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise

    async def close(self) -> None:
        for cid in list(self._procs):
            with contextlib.suppress(Exception):
                await self.stop(cid, 2.0)
        self._fanout.close()
