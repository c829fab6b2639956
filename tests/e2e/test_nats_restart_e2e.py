"""A nats-server restarted in the middle of a rolling update, under traffic (issue 9): two controllers and two
Docker agents as separate processes, 4 replicas with ``max_unavailable: 0``. The server is SIGKILLed for
4 s while the rollout is under way and started again on the same port and store.

No request through the proxies fails, no replica is replaced beyond the rollout's own (no node is declared
lost, nothing is rescheduled), the rollout completes, and the events of after the restart are recorded
(every replica of the new revision has its agent's ``started`` event)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.test_rollout_e2e import Traffic, versioned
from tests.e2e.test_self_healing_e2e import Cluster, cluster  # noqa: F401 (cluster: fixture)
from tests.fixtures import NatsServer, free_tcp_port, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.nats, pytest.mark.timeout(240)]

SERVICE = "rolling"


def manifest(body: str, expose: int) -> str:
    return versioned(body, expose, name=SERVICE, replicas=4,
                     update="{max_surge: 1, max_unavailable: 0, min_ready: 2s, progress_deadline: 120s}")


async def test_nats_restart_mid_rollout_costs_no_request(
    cluster: Cluster, nats_server: NatsServer, tmp_path: Path  # noqa: F811
) -> None:
    c = cluster
    c.controller("ctl-1", "3s")
    c.controller("ctl-2", "3s")
    for node in ("n1", "n2"):
        c.agent(node)
    await c.wait_nodes({"n1": "ready", "n2": "ready"})
    expose = free_tcp_port()
    await c.apply(manifest("v1", expose))
    await c.wait_settled(4, service=SERVICE, timeout=90)

    with Traffic(expose) as traffic:
        await c.apply(manifest("v2", expose))

        async def rolling() -> bool:  # the rollout is under way: a replica of revision 2 exists
            return any(r["revision"] == 2 for r in await c.containers(SERVICE))

        await wait_for(rolling, 60, 0.2, "rollout under way")
        await nats_server.akill()  # killed, as the issue reproduced it
        down = time.monotonic()
        await wait_for(lambda: time.monotonic() - down >= 4.0, 10)
        await nats_server.astart()

        async def complete() -> bool:
            rows = await c.containers(SERVICE)
            return len(rows) == 4 and all(r["revision"] == 2 and r["ready"] for r in rows)

        await wait_for(complete, 150, 0.5, "rollout complete after the NATS restart", ignore=(AssertionError,))
        await wait_for(lambda: traffic.bodies["v2"] > 20, 30)
    assert traffic.failures == [], (len(traffic.failures), traffic.failures[:5])
    assert traffic.bodies["v1"] > 0 and traffic.bodies["v2"] > 0

    final = {r["id"] for r in await c.containers(SERVICE)}

    async def recorded() -> bool:
        events = await c.events()
        started = {e["container"] for e in events if e["kind"] == "started"}
        return final <= started

    await wait_for(recorded, 30, 0.5, "a 'started' event for every replica of revision 2")
    events = await c.events()
    assert not [e for e in events if e["kind"] in ("node-lost", "rescheduled")], events
    scheduled = [e for e in events if e["kind"] == "scheduled" and e["service"] == SERVICE]
    assert len(scheduled) == 8, scheduled  # 4 of revision 1, 4 of revision 2: no extra replacement


