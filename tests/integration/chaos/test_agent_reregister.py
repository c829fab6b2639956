"""An agent re-registering after a NATS reconnect rides out the stream-leader election it meets: on a real
3-server cluster the server the agent is connected to, which also leads the nodes bucket's stream, is
SIGKILLed; the agent reconnects to a survivor at once, and its first put of the registration gets "no
response from stream" while the survivors elect a leader. It puts it again with backoff (``retry.retrying``)
instead of waiting for the next resync (5 s in production, two minutes here)."""

from __future__ import annotations

from typing import Any

import pytest
import structlog

from drover.agent.assignment import AssignmentGate
from drover.agent.membership import AssignmentFeed, reconnect_count
from drover.cli import lab
from drover.shared import bus
from drover.shared.models import NodeRegistration
from drover.shared.tasks import Supervisor
from tests.fixtures.wait import wait_for
from tests.integration.chaos.jscluster import current_leader, urls_of, wait_formed
from tests.integration.chaos.test_nats_cluster import cluster

__all__ = ["cluster"]

RESYNC = 120.0  # s: far beyond the test's deadline, so only the re-registration itself can do it


async def test_a_reregistration_meeting_an_election_is_retried_at_once(
    cluster: list[lab.Child], monkeypatch: pytest.MonkeyPatch
) -> None:
    await wait_formed(cluster, "rereg")
    probe = await bus.connect(urls_of(cluster), name="probe")
    leader = await current_leader(probe, "KV_drover_rereg_nodes")
    await probe.close()
    [victim] = [c for c in cluster if c.name == leader]
    # Connected to the leader's server only (the others are learnt from it): its death is a reconnect too.
    nc = await bus.connect(str(victim.info["url"]), name="agent")
    sup = Supervisor("agent-test")
    try:
        store = await bus.open_store(nc, "rereg")
        feed = AssignmentFeed(
            "n1", "boot-1", nc, store, AssignmentGate("n1"), sup,
            registration=lambda: NodeRegistration(name="n1", boot_id="boot-1"),
            on_assignment=lambda _a: None, wake=lambda: None, resync_interval=RESYNC,
            reconnects=reconnect_count(nc), log=structlog.get_logger("test"),
        )
        await feed.register()
        assert feed.registered
        before = (await store.nodes.get("n1")).revision or 0

        failures: list[str] = []
        put = store.nodes.put

        async def counted(key: str, value: bytes, **kw: Any) -> int:
            try:
                return await put(key, value, **kw)
            except Exception as exc:
                failures.append(repr(exc))
                raise

        monkeypatch.setattr(store.nodes, "put", counted)
        victim.kill()

        def reconnected() -> bool:
            feed.check_reconnect()  # as the agent's heartbeat loop does before every beat
            return feed.reconnects > 0

        await wait_for(reconnected, timeout=20, interval=0.05, message="the agent never reconnected")

        async def registered_again() -> bool:
            return feed.registered and ((await store.nodes.get("n1")).revision or 0) > before

        await wait_for(registered_again, timeout=bus.JS_WRITE_DEADLINE + 10, interval=0.2, ignore=(Exception,),
                       message="not registered again before the resync")
        # it met the election: without the retry that first failure waited for the resync
        assert failures, "the re-registration did not meet the election"
    finally:
        await sup.stop()
        await nc.close()
