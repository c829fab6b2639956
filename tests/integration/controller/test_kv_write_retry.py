"""Controller KV writes ride out a stream-leader election: on a real 3-server JetStream cluster, the
node-control bucket's stream leader is SIGKILLed and a write sent at once (to a surviving server) first meets
"no response from stream" (or, for its read, no answer); ``records.cas_update`` does it again through
``retry.retrying`` until the new leader takes it, within ``bus.JS_WRITE_DEADLINE``, and writes it once."""

from __future__ import annotations

import time

from drover.cli import lab
from drover.controller import records
from drover.shared import bus
from drover.shared.models import NodeControl
from tests.integration.chaos.jscluster import current_leader, urls_of, wait_formed
from tests.integration.chaos.test_nats_cluster import cluster

__all__ = ["cluster"]


async def test_a_write_during_a_stream_leader_election_is_retried_and_done_once(
    cluster: list[lab.Child],
) -> None:
    await wait_formed(cluster, "kvretry")
    probe = await bus.connect(urls_of(cluster), name="probe")
    leader = await current_leader(probe, "KV_drover_kvretry_nodectl")
    await probe.close()
    [victim] = [c for c in cluster if c.name == leader]
    survivor = next(c for c in cluster if c is not victim)
    # Connected to a survivor only: the write meets the election, not a reconnect.
    nc = await bus.connect(str(survivor.info["url"]), name="writer")
    try:
        store = await bus.open_store(nc, "kvretry")
        victim.kill()
        began = time.monotonic()
        def cordon(old: NodeControl | None) -> NodeControl | None:
            return None if old is not None and old.cordoned else NodeControl(cordoned=True)

        _, new, rev = await records.cas_update(store.nodectl, "n1", NodeControl.from_wire, cordon)
        took = time.monotonic() - began
        assert new is not None and rev > 0
        assert took < bus.JS_WRITE_DEADLINE + 5.5  # one attempt may wait out its 5 s request timeout
        # it met the election (a first read unanswered for JS_READ_TIMEOUT at least): without the retry
        # that read's timeout, or the write's "no response from stream", is the request's error
        assert took > bus.JS_READ_TIMEOUT, "the write did not meet the election"
        entry = await store.nodectl.get("n1")
        assert NodeControl.from_wire(entry.value).cordoned and entry.revision == rev
    finally:
        await nc.close()
