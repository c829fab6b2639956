"""Docker driver (aiodocker): containers labelled with the cluster and node they belong to.

Only containers carrying both ``drover.cluster=<cluster>`` and ``drover.node=<node>`` are ever listed,
stopped or removed; everything else on the engine is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import struct
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from drover.agent.drivers import engine
from drover.agent.drivers.base import (
    DriverError,
    DriverEvent,
    ImageMissing,
    Observed,
    container_name,
    host_network,
    published_ports,
    spec_command,
    spec_env,
)
from drover.agent.drivers.dockerview import (
    L_CLUSTER,
    L_ID,
    L_NODE,
    L_REVISION,
    L_SERVICE,
    labels_ok,
    observed_from_inspect,
)
from drover.agent.drivers.lines import CHUNK, text_lines
from drover.agent.drivers.pull import credentials, policy
from drover.agent.files import spec_binds
from drover.shared.manifest import ServiceSpec
from drover.shared.models import AssignedContainer

if TYPE_CHECKING:
    import aiodocker

log = structlog.get_logger("drover.agent.docker")


class _NotLoaded(Exception):
    """Stands for aiodocker's DockerError until aiodocker is imported (nothing can raise that one before)."""


# aiodocker (and aiohttp under it) is imported on the driver's first engine call that needs it, not with this
# module: listing goes through ``engine`` until then, so a restarted agent's first heartbeat does not wait for
# aiohttp (see engine.py). ``DockerDriver.docker`` rebinds this name to the real class when it imports it.
DockerError: Any = _NotLoaded


def _aiodocker() -> Any:
    """The aiodocker package, imported now; ``DockerError`` is its exception class from here on."""
    global DockerError
    import aiodocker
    from aiodocker.exceptions import DockerError as loaded

    DockerError = loaded
    return aiodocker

def nano_cpus(cpu: object) -> int:
    """Cores as Docker's NanoCpus; 0 = no limit."""
    if isinstance(cpu, int | float) and not isinstance(cpu, bool) and cpu > 0:
        return int(cpu * 1e9)
    return 0


#: Engine calls that build or tear down a container's network sandbox (create, start, remove) in flight at
#: once per agent. Ten concurrent starts finish as soon as with no cap on this engine (ten starts, 2026-12-01:
#: 3 at a time 2.2 s, 5 → 1.9 s, 10 → 1.85 s); more would only queue inside dockerd, where Docker 20.10's
#: libnetwork can deadlock under container churn (moby/moby#46661). Stops are not capped: a long stop_grace
#: must not hold up another replica's start.
ENGINE_CALLS = 10
UNTHROTTLED = (os.cpu_count() or 1) * 1_000_000_000  # NanoCpus that cannot throttle on this host
MIN_MEMORY = 6 * 1024 * 1024  # Docker refuses less

class DockerDriver:
    name = "docker"

    def __init__(
        self, cluster: str, node: str, *, pull: bool = True, docker: aiodocker.Docker | None = None,
        docker_config: Path | None = None, engine_calls: int = ENGINE_CALLS,
    ):
        self.cluster = cluster
        self.node = node
        self.pull = pull  # False: never pull, whatever the spec says
        self.docker_config = docker_config  # registry credentials (None: ~/.docker/config.json)
        self._docker = docker
        if docker is not None:
            _aiodocker()  # a client passed in can raise DockerError at once
        self._inspect_cache: dict[str, tuple[str, Observed]] = {}  # container id -> (list state, observed)
        self._engine_slots = asyncio.Semaphore(engine_calls)  # see ENGINE_CALLS

    @property
    def docker(self) -> aiodocker.Docker:
        if self._docker is None:
            self._docker = _aiodocker().Docker()
        return self._docker

    def _reader(self) -> str | None:
        """The local engine's socket while aiodocker is not loaded yet (reads go through ``engine``)."""
        return engine.local_socket() if self._docker is None else None

    def _filters(self) -> str:
        return json.dumps({"label": [f"{L_CLUSTER}={self.cluster}", f"{L_NODE}={self.node}"]})

    async def close(self) -> None:
        if self._docker is not None:
            with contextlib.suppress(Exception):
                await self._docker.close()
            self._docker = None

    # --- observation --------------------------------------------------------------------------

    async def _rows(self) -> list[dict[str, Any]]:
        sock = self._reader()
        try:
            if sock is not None:
                rows = await engine.get_json(sock, "/containers/json", {"all": "1", "filters": self._filters()})
                return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
            return [dict(row._container) for row in await self.docker.containers.list(all=True,
                                                                                      filters=self._filters())]
        except (DockerError, engine.EngineError) as exc:
            raise DriverError(f"docker list failed: {exc.message}") from exc

    async def list(self) -> list[Observed]:
        out: list[Observed] = []
        seen: set[str] = set()
        for data in await self._rows():
            labels = data.get("Labels") or {}
            if not labels_ok(labels, self.cluster, self.node):
                continue
            cid = str(data.get("Id", ""))
            seen.add(cid)
            key = str(data.get("State", ""))
            cached = self._inspect_cache.get(cid)
            if cached is not None and cached[0] == key:
                out.append(cached[1])
                continue
            obs = await self._inspect(cid)
            if obs is None:
                continue
            self._inspect_cache[cid] = (key, obs)
            out.append(obs)
        for cid in list(self._inspect_cache):
            if cid not in seen:
                del self._inspect_cache[cid]
        return out

    async def _inspect(self, container_id: str) -> Observed | None:
        sock = self._reader()
        try:
            if sock is not None:
                info = await engine.get_json(sock, f"/containers/{container_id}/json")
            else:
                info = await self.docker.containers.container(container_id).show()
        except (DockerError, engine.EngineError) as exc:
            if exc.status == 404:
                return None
            raise DriverError(f"docker inspect failed: {exc.message}") from exc
        return observed_from_inspect(info)

    def forget(self, container_id: str) -> None:
        self._inspect_cache.pop(container_id, None)

    # --- actions ------------------------------------------------------------------------------

    @staticmethod
    def cpu_limit(spec: ServiceSpec) -> int:
        """The spec's cpu as Docker's NanoCpus (0 = no limit)."""
        return nano_cpus(spec.resources.cpu)

    def container_config(self, a: AssignedContainer, address: str) -> dict[str, Any]:
        spec = a.spec
        name = container_name(a.service, a.id)
        labels = {
            L_CLUSTER: self.cluster,
            L_SERVICE: a.service,
            L_NODE: self.node,
            L_REVISION: str(a.revision),
            L_ID: a.id,
        }
        hostcfg: dict[str, Any] = {"Init": True, "RestartPolicy": {"Name": "no"}}
        mem = spec.resources.memory
        # No NanoCpus here: the CPU quota is applied right after the start (see _start), because a small quota
        # (0.1 cpu and less) throttles runc and docker-init themselves and makes a start take seconds.
        if mem > 0:
            hostcfg["Memory"] = max(mem, MIN_MEMORY)
        ports = published_ports(spec)
        exposed: dict[str, dict[str, Any]] = {f"{p}/tcp": {} for p in ports}
        binds = spec_binds(spec, a.file_binds)
        if binds:
            hostcfg["Binds"] = binds
        if host_network(spec):
            hostcfg["NetworkMode"] = "host"
        else:
            hostcfg["NetworkMode"] = "bridge"
            hostcfg["PortBindings"] = {f"{p}/tcp": [{"HostIp": address, "HostPort": ""}] for p in ports}
        config: dict[str, Any] = {
            "Image": spec.image,
            "Env": [f"{k}={v}" for k, v in spec_env(spec).items()],
            "Labels": labels,
            "Hostname": name,
            "ExposedPorts": exposed,
            "HostConfig": hostcfg,
        }
        cmd = spec_command(spec)
        if cmd is not None:
            config["Cmd"] = cmd
        config["StopTimeout"] = max(1, math.ceil(spec.stop_grace))
        return config

    async def _pull(self, image: str) -> None:
        """Pull an image with the host's registry credentials; a failure raises ``ImageMissing`` saying why
        (the agent retries the create with its backoff)."""
        auth = credentials(image, self.docker_config)
        log.info("pulling image", image=image, authenticated=auth is not None)
        try:
            await asyncio.wait_for(self.docker.images.pull(image, auth=auth), timeout=300)
        except DockerError as exc:
            raise ImageMissing(image, f"could not be pulled: {exc.message}") from exc
        except TimeoutError as exc:
            raise ImageMissing(image, "could not be pulled: timed out") from exc

    async def create_and_start(self, assigned: AssignedContainer, address: str) -> Observed:
        config = self.container_config(assigned, address)
        name = container_name(assigned.service, assigned.id)
        image = config["Image"]
        if not image:
            raise ImageMissing("(none)")
        how = policy(assigned.spec) if self.pull else "never"
        if how == "always":
            await self._pull(image)
        try:
            async with self._engine_slots:
                container = await self.docker.containers.create(config, name=name)
        except DockerError as exc:
            if exc.status == 404 and "image" in exc.message.lower():
                if how == "never":
                    raise ImageMissing(image, "is not on this node (pull: never)") from exc
                await self._pull(image)
                try:
                    async with self._engine_slots:
                        container = await self.docker.containers.create(config, name=name)
                except DockerError as exc2:
                    raise ImageMissing(image) from exc2
            elif exc.status == 409:
                # The name is taken: ours from an earlier try (adopt it) or someone else's (fail). Its quota
                # is not known (it may have run before): _start reads it.
                container = await self._adopt_by_name(name)
                return await self._start(container.id, self.cpu_limit(assigned.spec))
            else:
                raise DriverError(f"docker create failed: {exc.message}") from exc
        # Just created without NanoCpus (see container_config): nothing to read or lift before the start.
        return await self._start(container.id, self.cpu_limit(assigned.spec), current=0)

    async def _adopt_by_name(self, name: str) -> Any:
        try:
            c = await self.docker.containers.get(name)
        except DockerError as exc:
            raise DriverError(f"container name {name} is taken: {exc.message}") from exc
        labels = (c._container.get("Config") or {}).get("Labels") or {}
        if not labels_ok(labels, self.cluster, self.node):
            raise DriverError(f"container name {name} is taken by a container drover does not own")
        return c

    async def _start(self, container_id: str, nano: int | None = None, *, current: int | None = None) -> Observed:
        """Start a container, then apply its CPU quota (a small quota set beforehand throttles runc and
        docker-init and makes a start take seconds). For a restart the quota is lifted for the start; ``nano``
        None (the caller does not know the spec) keeps the quota the container has. ``current``: the quota the
        container has now, when the caller knows it (0 for one just created), which saves an inspect.

        Every engine call here competes with the other replicas' starts (the engine starts about ten
        containers a second on a small host): a fresh container costs a create, a start, the quota update
        and one inspect, the last two at once."""
        c = self.docker.containers.container(container_id)
        if current is None and (nano is None or nano > 0):
            info = await c.show()
            current = int((info.get("HostConfig") or {}).get("NanoCpus") or 0)
        current = current or 0
        if nano is None:
            nano = current if current != UNTHROTTLED else 0
        if nano and current and current != UNTHROTTLED:  # a quota from an earlier run: lifted for the start
            await self._set_cpu(container_id, UNTHROTTLED)
        try:
            async with self._engine_slots:
                await c.start()
        except DockerError as exc:
            if exc.status != 304:  # 304: already running
                raise DriverError(f"docker start failed: {exc.message}") from exc
        self.forget(container_id)
        if nano:
            _, obs = await asyncio.gather(self._set_cpu(container_id, nano), self._inspect(container_id))
        else:
            obs = await self._inspect(container_id)
        if obs is None:
            raise DriverError(f"container {container_id[:12]} vanished after start")
        # The next list() takes this inspect while the engine still reports the same state (a start or die
        # event drops it): a start is inspected once, not again by the reconcile pass it triggers.
        self._inspect_cache[container_id] = (obs.state, obs)
        return obs

    async def _set_cpu(self, container_id: str, nano_cpus: int) -> None:
        """Set the CPU quota. A container that already exited cannot be updated: that is not an error (the
        quota is applied again at its next start, from its label)."""
        try:
            await self.docker._query_json(f"containers/{container_id}/update", method="POST",
                                          data={"NanoCpus": nano_cpus})
        except DockerError as exc:
            # Docker 20.10 says "task <id> not found" (status 500) for one that exited between start and update.
            gone = "stopped container", "deleted process", "task " + container_id
            if exc.status == 404 or any(g in exc.message for g in gone):
                log.debug("cpu quota not set: the container is not running", container_id=container_id[:12])
                return
            raise DriverError(f"docker update (cpu limit) failed: {exc.message}") from exc

    async def restart(self, container_id: str, cpu: float | None = None) -> Observed:
        return await self._start(container_id, None if cpu is None else nano_cpus(cpu))

    async def stop(self, container_id: str, grace: float) -> None:
        self.forget(container_id)
        c = self.docker.containers.container(container_id)
        try:
            await c.stop(t=max(0, math.ceil(grace)))
        except DockerError as exc:
            if exc.status not in (304, 404):
                raise DriverError(f"docker stop failed: {exc.message}") from exc

    async def kill(self, container_id: str) -> None:
        self.forget(container_id)
        try:
            await self.docker.containers.container(container_id).kill()
        except DockerError as exc:
            if exc.status not in (404, 409):
                raise DriverError(f"docker kill failed: {exc.message}") from exc

    async def remove(self, container_id: str) -> None:
        self.forget(container_id)
        try:
            async with self._engine_slots:
                await self.docker.containers.container(container_id).delete(force=True)
        except DockerError as exc:
            if exc.status != 404 and "already in progress" not in exc.message:
                raise DriverError(f"docker remove failed: {exc.message}") from exc

    # --- streams ------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[DriverEvent]:
        filters = json.dumps(
            {
                "type": ["container"],
                "label": [f"{L_CLUSTER}={self.cluster}", f"{L_NODE}={self.node}"],
                "event": ["start", "die", "oom", "destroy"],
            }
        )
        docker = self.docker
        timeout = docker._resolve_long_running_timeout(None)
        async with docker._query("events", params={"filters": filters}, timeout=timeout) as resp:
            while True:
                line = await resp.content.readline()
                if not line:
                    return
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                actor = ev.get("Actor") or {}
                attrs = actor.get("Attributes") or {}
                if not labels_ok(attrs, self.cluster, self.node):
                    continue
                cid = str(actor.get("ID") or ev.get("id") or "")
                self.forget(cid)
                code: int | None = None
                if "exitCode" in attrs:
                    with contextlib.suppress(ValueError):
                        code = int(attrs["exitCode"])
                yield DriverEvent(attrs[L_ID], str(ev.get("Action") or ev.get("status")), cid, code,
                                  service=str(attrs.get(L_SERVICE, "")))

    async def logs(self, container_id: str, tail: int | None, follow: bool) -> AsyncIterator[str]:
        # Streamed and cut into bounded lines: a whole log is never held in memory (aiodocker's list form
        # reads all of it), nor an endless line.
        try:
            async for line in text_lines(self._log_chunks(container_id, tail, follow)):
                yield line
        except DockerError as exc:
            raise DriverError(f"docker logs failed: {exc.message}") from exc

    async def _log_chunks(self, container_id: str, tail: int | None, follow: bool) -> AsyncIterator[bytes]:
        """The payload bytes of Docker's multiplexed log stream (drover containers have no TTY)."""
        params = {
            "stdout": "true",
            "stderr": "true",
            "follow": "true" if follow else "false",
            "tail": str(tail) if tail is not None else "all",
        }
        timeout = self.docker._resolve_long_running_timeout(None)
        async with self.docker._query(f"containers/{container_id}/logs", params=params, timeout=timeout) as resp:
            content = resp.content
            while True:
                try:
                    header = await content.readexactly(8)
                except asyncio.IncompleteReadError:
                    return
                (length,) = struct.unpack(">4xL", header)
                while length > 0:  # a frame is read in pieces, whatever length it claims
                    piece = await content.read(min(length, CHUNK))
                    if not piece:
                        return
                    length -= len(piece)
                    yield piece

    async def exec(self, container_id: str, command: Sequence[str], timeout: float) -> int:
        c = self.docker.containers.container(container_id)

        async def run() -> int:
            exe = await c.exec(list(command), stdout=True, stderr=True)
            async with exe.start(detach=False) as stream:
                while await stream.read_out() is not None:
                    pass
            info = await exe.inspect()
            code = info.get("ExitCode")
            return int(code) if code is not None else -1

        try:
            return await asyncio.wait_for(run(), timeout)
        except DockerError as exc:
            raise DriverError(f"docker exec failed: {exc.message}") from exc
