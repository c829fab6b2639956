"""Agent actions do not wait on each other: a replica being stopped with a long stop_grace (it ignores
SIGTERM) does not delay the restart of another service's killed container. Real nats-server, real Docker."""

from __future__ import annotations

import time

import aiodocker
import pytest

from tests.fixtures import wait_for
from tests.fixtures.nats import NatsServer
from tests.integration.agent_support import replica, running, running_agent, tap

pytestmark = [pytest.mark.docker, pytest.mark.nats]

STUBBORN = ["sh", "-c", "trap '' TERM; while true; do sleep 0.2; done"]  # ignores SIGTERM: waits out its grace
GRACE = 40.0


async def test_long_stop_grace_does_not_delay_another_services_restart(
    nats_server: NatsServer, docker_client: aiodocker.Docker, docker_cleanup: str, busybox_image: str
) -> None:
    cluster = docker_cleanup
    async with tap(nats_server.url, cluster) as t, running_agent(nats_server.url, cluster, "n1") as agent:
        slow = replica("slow1", service="slow", command=STUBBORN, ports=[], stop_grace=GRACE)
        fast = replica("fast1", service="fast")
        await t.assign("n1", [slow, fast])
        await wait_for(lambda: running(t.statuses("n1"), ["fast1"]), 20, message="fast1 running")
        await wait_for(lambda: (s := t.statuses("n1").get("slow1")) and s.state == "running", 20)
        slow_cid = t.statuses("n1")["slow1"].container_id
        fast_cid = t.statuses("n1")["fast1"].container_id

        await t.assign("n1", [fast])  # slow1 is no longer wanted: its stop takes GRACE seconds
        await wait_for(lambda: agent.workers.busy("slow1"), 10, message="slow1 being stopped")
        started = time.monotonic()
        await docker_client.containers.container(fast_cid).kill()
        await wait_for(lambda: (s := t.statuses("n1").get("fast1")) and s.restarts >= 1 and s.state == "running", 15,
                       message="fast1 restarted")
        assert time.monotonic() - started < GRACE / 2
        # ... while slow1's stop is still under way.
        info = await docker_client.containers.container(slow_cid).show()
        assert info["State"]["Running"] and agent.workers.busy("slow1")
        await docker_client.containers.container(slow_cid).kill()  # end the test without waiting out GRACE
        await wait_for(lambda: not agent.workers.busy("slow1"), 20, message="slow1 removed")
        await wait_for(lambda: set(t.statuses("n1")) == {"fast1"}, 10)
