"""The Docker driver's start path against the real engine: how many engine calls a fresh replica costs.

Every call competes with the other replicas' starts (the engine starts about ten containers a second on a
small host), so a fresh container gets a create, a start, its CPU quota and one inspect, and the reconcile
pass that follows the start does not inspect it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiodocker
import pytest

from drover.agent.drivers.base import RUNNING, Observed
from drover.agent.drivers.docker import DockerDriver
from drover.agent.drivers.dockerview import L_CLUSTER
from tests.fixtures import wait_for
from tests.integration.agent_support import replica

pytestmark = [pytest.mark.docker]


@contextlib.asynccontextmanager
async def _engine_events(docker: aiodocker.Docker, cluster: str) -> Any:
    """The engine's container events of ``cluster`` (action names, in order), while the block runs."""
    seen: list[tuple[str, str]] = []
    filters = json.dumps({"type": ["container"], "label": [f"{L_CLUSTER}={cluster}"]})
    opened = asyncio.Event()

    async def read() -> None:
        async with docker._query("events", params={"filters": filters}, timeout=None) as resp:
            opened.set()
            while line := await resp.content.readline():
                ev = json.loads(line)
                seen.append((str(ev.get("Action", "")).split(":")[0], str((ev.get("Actor") or {}).get("ID", ""))))

    task = asyncio.ensure_future(read())
    await asyncio.wait_for(opened.wait(), 10)
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_fresh_replica_is_started_without_extra_engine_calls(
    docker_client: aiodocker.Docker, docker_cleanup: str, busybox_image: str
) -> None:
    cluster = docker_cleanup
    driver = DockerDriver(cluster, "n1", pull=False)
    try:
        async with _engine_events(docker_client, cluster) as seen:
            obs = await driver.create_and_start(replica("f1", service="fresh", command=["sleep", "300"]), "127.0.0.1")
            assert obs.state == RUNNING
            info = await docker_client.containers.container(obs.container_id).show()
            # The quota is in place once it runs (set after the start: a small quota throttles runc) ...
            assert info["HostConfig"]["NanoCpus"] == 100_000_000
            await wait_for(lambda: ("update", obs.container_id) in seen, 10, message="the quota's update event")
        actions = [a for a, cid in seen if cid == obs.container_id and a in ("create", "start", "update")]
        # ... and nothing was lifted or read before the start of a container that was just created.
        assert actions == ["create", "start", "update"], actions

        inspected: list[str] = []
        real = driver._inspect

        async def counting(container_id: str) -> Observed | None:
            inspected.append(container_id)
            return await real(container_id)

        driver._inspect = counting  # type: ignore[method-assign]
        listed = await driver.list()
        # The inspect made right after the start serves the next list: not inspected again.
        assert [o.container_id for o in listed] == [obs.container_id]
        assert listed[0].state == RUNNING and inspected == []
        # Once the engine reports another state, it is inspected again.
        await docker_client.containers.container(obs.container_id).kill()

        async def exited() -> bool:
            return (await driver.list())[0].state != RUNNING

        await wait_for(exited, 10, message="the killed container listed as exited")
        assert inspected == [obs.container_id]
    finally:
        await driver.close()


async def test_creates_starts_and_removes_in_flight_are_capped(
    docker_client: aiodocker.Docker, docker_cleanup: str, busybox_image: str
) -> None:
    """At most ``engine_calls`` creates, starts and removes reach the engine at once (Docker 20.10's libnetwork
    can deadlock under churn); the replicas beyond the cap wait their turn and still all run."""
    driver = DockerDriver(docker_cleanup, "n1", pull=False, engine_calls=2)
    in_flight: dict[str, int] = {"now": 0, "max": 0}
    real = driver.docker._do_query

    async def counting(path: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        where = str(path)
        capped = method == "DELETE" or (method == "POST" and (where == "containers/create" or where.endswith("/start")))
        if capped:
            in_flight["now"] += 1
            in_flight["max"] = max(in_flight["max"], in_flight["now"])
        try:
            return await real(path, method, *args, **kwargs)
        finally:
            if capped:
                in_flight["now"] -= 1

    driver.docker._do_query = counting  # type: ignore[method-assign]
    try:
        started = await asyncio.gather(*(
            driver.create_and_start(replica(f"c{i}", service="capped", command=["sleep", "300"]), "127.0.0.1")
            for i in range(6)
        ))
        assert all(o.state == RUNNING for o in started)
        assert in_flight["max"] == 2, in_flight
        in_flight["max"] = 0
        await asyncio.gather(*(driver.remove(o.container_id) for o in started))
        assert in_flight["max"] == 2, in_flight
        assert await driver.list() == []
    finally:
        await driver.close()
