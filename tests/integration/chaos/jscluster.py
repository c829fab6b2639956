"""Helpers for tests on a real 3-server JetStream cluster (the ``cluster`` fixture of test_nats_cluster):
wait until it has formed as a client sees it, and find a stream's leader once its followers are current."""

from __future__ import annotations

import json

from nats.aio.client import Client as NATS

from drover.cli import lab
from drover.shared import bus
from tests.fixtures.wait import wait_for


def urls_of(cluster: list[lab.Child]) -> str:
    return ",".join(str(c.info["url"]) for c in cluster)


async def wait_formed(cluster: list[lab.Child], name: str) -> None:
    """Until a client sees all three servers and can open cluster ``name``'s store. A store opened earlier
    makes its buckets with fewer replicas (``bus.cluster_replicas``: one, on a server a test may then kill:
    leaderless for good)."""

    async def formed() -> bool:
        nc = await bus.connect(urls_of(cluster), name="probe")
        try:
            if bus.cluster_replicas(nc) != 3:
                return False
            await bus.open_store(nc, name)
            return True
        finally:
            await nc.close()

    await wait_for(formed, timeout=60, interval=0.3, ignore=(Exception,), message="cluster never formed")


async def stream_cluster(nc: NATS, stream: str) -> dict[str, object]:
    """The ``cluster`` part of a stream's info (the raw API reply: nats-py's ClusterInfo leaves ``replicas``
    unparsed)."""
    reply = await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=2)
    cluster: dict[str, object] = json.loads(reply.data).get("cluster", {})
    return cluster


async def current_leader(nc: NATS, stream: str, followers: int = 2) -> str:
    """The name of ``stream``'s leader once it has ``followers`` followers and all are current. A leader killed
    while a follower is still catching up can leave the stream leaderless for minutes (a follower that is not
    current does not campaign), as `drover chaos` waits for every server's /healthz before a nats-kill."""

    async def leader() -> str | None:
        c = await stream_cluster(nc, stream)
        replicas = c.get("replicas") or []
        assert isinstance(replicas, list)
        if not c.get("leader") or len(replicas) != followers:
            return None
        return str(c["leader"]) if all(r.get("current") for r in replicas) else None

    found: str = await wait_for(leader, timeout=60, interval=0.2, ignore=(Exception,),
                                message=f"{stream}'s followers never became current")
    return found
