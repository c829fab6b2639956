"""The shared log of write replies on a real nats-server, as two controllers use it: one claims a request
id and the other waits for its reply; a claim abandoned (its controller died or stalled) is taken over by
exactly one; the TTL bucket is what both see."""

from __future__ import annotations

import asyncio

from drover.controller.requestlog import TAKEOVER_AFTER, TTL, Busy, RequestLog
from drover.shared import bus
from drover.shared.subjects import Names
from tests.fixtures.nats import NatsServer
from tests.fixtures.wait import wait_for


async def _logs(url: str, cluster: str, clock: list[float]) -> tuple[RequestLog, RequestLog, object]:
    nc = await bus.connect(url, name="test")
    store = await bus.open_store(nc, cluster)
    kv = await store.open_bucket(Names(cluster).requests_bucket, ttl=TTL)
    a = RequestLog(kv, clock=lambda: clock[0], wait=0.3)
    b = RequestLog(kv, clock=lambda: clock[0], wait=0.3)
    return a, b, nc


async def test_a_claimed_request_is_answered_once(nats_server: NatsServer, cluster_name: str) -> None:
    clock = [1000.0]
    a, b, nc = await _logs(nats_server.url, cluster_name, clock)
    done: list[str] = []
    release = asyncio.Event()

    async def work(who: str) -> bytes:
        done.append(who)
        await release.wait()  # still working while the other log meets the claim
        return f"reply of {who}".encode()

    async def release_when_claimed() -> None:
        await wait_for(lambda: done, timeout=10, message="nobody took the request")
        release.set()

    body = {"request_id": "r1"}
    first, second, _ = await asyncio.gather(
        a.answer("apply", body, lambda: work("a")), b.answer("apply", body, lambda: work("b")),
        release_when_claimed(),
    )
    assert len(done) == 1  # one did it; the other waited for its reply
    assert first == second == f"reply of {done[0]}".encode()
    assert await b.answer("apply", body, lambda: work("b")) == first  # later retries: the stored reply
    assert len(done) == 1
    # reads are not logged; a request without an id is simply done
    assert await a.answer("get_services", body, lambda: work("read")) == b"reply of read"
    assert await a.answer("apply", {}, lambda: work("no-id")) == b"reply of no-id"
    bad = await a.answer("apply", {"request_id": "a b"}, lambda: work("never"))
    assert bad is not None and b"request_id" in bad and "never" not in done
    await nc.close()  # type: ignore[attr-defined]


async def test_an_abandoned_claim_is_taken_over_by_one(nats_server: NatsServer, cluster_name: str) -> None:
    clock = [1000.0]
    a, b, nc = await _logs(nats_server.url, cluster_name, clock)
    assert await a.claim("r2") is None  # a claims it, then stalls before finishing
    try:
        await b.claim("r2")
        raise AssertionError("a live claim must make others wait")
    except Busy:
        pass
    clock[0] += TAKEOVER_AFTER
    results = await asyncio.gather(b.claim("r2"), b.claim("r2"), return_exceptions=True)
    assert results.count(None) == 1  # exactly one takes over; the other now waits on the new claim
    assert isinstance(next(r for r in results if r is not None), Busy)
    await nc.close()  # type: ignore[attr-defined]
