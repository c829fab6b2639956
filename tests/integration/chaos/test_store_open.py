"""Opening a cluster's store on a real 3-server JetStream cluster (``shared/bus.open_store``):
- while the streams of a just-killed server elect new leaders, every stream is asked at once and a retry
  asks only for those still unanswered (a restarted controller answers soon after the last election
  instead of starting over on each unanswered stream), and the controller's also waits for the JetStream
  meta leader (which alone creates the consumers of the watches that follow);
- the controller's store raises a bucket's and the events stream's replicas to the cluster's (one made while
  its creator saw a single server stays R1 otherwise, and is leaderless for good once that server dies),
  never lowers them, and other roles leave them as they are."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections import Counter

import pytest
from nats.js.api import KeyValueConfig, StorageType, StreamConfig

from drover.cli import lab
from drover.shared import bus
from drover.shared.errors import TemporaryError
from drover.shared.subjects import Names
from tests.fixtures.wait import wait_for
from tests.integration.chaos.jscluster import current_leader, stream_cluster, urls_of, wait_formed
from tests.integration.chaos.test_nats_cluster import cluster

__all__ = ["cluster"]


def streams_of(names: Names) -> list[str]:
    buckets = [names.services_bucket, names.assignments_bucket, names.nodes_bucket, names.nodectl_bucket,
               names.config_bucket]
    return [f"KV_{b}" for b in buckets] + [names.events_stream]


async def test_an_open_during_elections_asks_every_stream_at_once_and_again_only_the_unanswered(
    cluster: list[lab.Child],
) -> None:
    names = Names("openall")
    await wait_formed(cluster, "openall")
    probe = await bus.connect(urls_of(cluster), name="probe")
    leaders = {s: await current_leader(probe, s) for s in streams_of(names)}
    await probe.close()
    # The server leading the most streams dies: the others keep their leaders and answer at once.
    most = Counter(leaders.values()).most_common(1)[0][0]
    [victim] = [c for c in cluster if c.name == most]
    survivor = next(c for c in cluster if c is not victim)
    orphaned = {s for s, leader in leaders.items() if leader == most}
    # Every stream-info request the opening client sends, seen by a listener on the same server.
    asked: list[tuple[float, str]] = []
    spy = await bus.connect(str(survivor.info["url"]), name="spy")
    nc = await bus.connect(str(survivor.info["url"]), name="opener")  # connected before: no reconnect
    try:
        async def seen(msg: object) -> None:
            asked.append((time.monotonic(), str(getattr(msg, "subject", "")).rsplit(".", 1)[-1]))

        await spy.subscribe("$JS.API.STREAM.INFO.*", cb=seen)
        await spy.flush()
        victim.kill()
        began = time.monotonic()
        store = await bus.open_store(nc, "openall")
        took = time.monotonic() - began
        await spy.flush()
        assert store.services and store.config  # every handle is there
    finally:
        await nc.close()
        await spy.close()
    per_stream = Counter(s for _, s in asked)
    retried = {s for s, n in per_stream.items() if n > (1 if s == names.events_stream else 2)}
    # it met the elections (some stream unanswered at first) ...
    assert retried and retried <= orphaned, (per_stream, orphaned, took)
    # ... asked every stream at once at first (before any first ask could time out) ...
    firsts = {s: min(t for t, x in asked if x == s) for s in streams_of(names)}
    assert max(firsts.values()) - min(firsts.values()) < 0.9, firsts
    # ... and never again one that had answered: a bucket is asked twice (its info, then nats-py's
    # key_value), the events stream once; a stream whose leader lived is in no retry.
    for s in set(streams_of(names)) - orphaned:
        assert per_stream[s] <= (1 if s == names.events_stream else 2), (s, per_stream)


async def test_the_controllers_open_waits_for_the_jetstream_meta_leader(cluster: list[lab.Child]) -> None:
    """The meta leader alone creates consumers: a store opened while it is being elected (every stream still
    led) used to return at once, and the controller's watches then waited out their 5 s request timeout."""
    names = Names("meta")
    await wait_formed(cluster, "meta")
    nc = await bus.connect(urls_of(cluster), name="probe")
    try:
        meta = await meta_leader(cluster[0])
        for stream in streams_of(names):  # no stream led by the meta leader's server: only the meta elects
            while await current_leader(nc, stream) == meta:
                await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=5)
                await wait_for(lambda s=stream: stream_cluster(nc, s), timeout=20, ignore=(Exception,))
    finally:
        await nc.close()
    [victim] = [c for c in cluster if c.name == meta]
    survivor = next(c for c in cluster if c is not victim)
    nc = await bus.connect(str(survivor.info["url"]), name="opener")
    try:
        victim.kill()
        began = time.monotonic()
        store = await bus.open_store(nc, "meta", manage=True)
        took = time.monotonic() - began
        # a consumer can be made at once (the account's JetStream info: answered by the meta leader only)
        await nc.jetstream(timeout=2.0).account_info()
        watch = await asyncio.wait_for(store.services.watchall(), 3)
        await watch.stop()
        assert took > 1.0, "the meta leader was elected before the open asked (the test did not meet it)"
    finally:
        await nc.close()


async def meta_leader(server: lab.Child) -> str:
    """The JetStream meta leader's server name, from a server's monitoring port."""

    def read() -> str:
        url = f"http://127.0.0.1:{server.info['monitor_port']}/jsz"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return str(json.loads(reply.read())["meta_cluster"]["leader"])

    return await asyncio.to_thread(read)


async def test_the_controllers_store_raises_replicas_to_the_clusters_and_never_lowers_them(
    cluster: list[lab.Child],
) -> None:
    names = Names("raise")
    await wait_formed(cluster, "raiseprobe")
    nc = await bus.connect(urls_of(cluster), name="controller")
    try:
        js = nc.jetstream(timeout=5.0)
        # As made by a client that saw one server (a cluster still forming): one copy each.
        services = await js.create_key_value(
            KeyValueConfig(bucket=names.services_bucket, history=1, storage=StorageType.FILE, replicas=1)
        )
        # A just-made R1 stream's subjects reach the server this client is on a moment after the create
        # returns (the stream's placement travels through the meta layer): until then a put has no responder.
        await wait_for(lambda: services.put("kept", b"1"), timeout=20, interval=0.1, ignore=(Exception,),
                       message="the new bucket never took its first write")
        await js.add_stream(StreamConfig(name=names.events_stream, subjects=[names.events_all],
                                         storage=StorageType.FILE, num_replicas=1))
        services_stream = f"KV_{names.services_bucket}"

        # Another role opens the store: nothing is updated.
        await bus.open_store(nc, "raise")
        assert (await js.stream_info(services_stream)).config.num_replicas == 1
        assert (await js.stream_info(names.events_stream)).config.num_replicas == 1

        store = await bus.open_store(nc, "raise", manage=True)
        assert store.replicas == 3
        assert (await js.stream_info(services_stream)).config.num_replicas == 3
        assert (await js.stream_info(names.events_stream)).config.num_replicas == 3
        assert (await store.services.get("kept")).value == b"1"

        # A controller that sees fewer servers right now (one being down) leaves three copies as they are.
        fewer = bus.ClusterStore(nc, names, manage=True)
        fewer.replicas = 1
        await fewer.open()
        assert (await js.stream_info(services_stream)).config.num_replicas == 3

        # The point of it: the server that held the one copy dies, and the bucket still takes writes.
        holder = await current_leader(nc, services_stream)
        [victim] = [c for c in cluster if c.name == holder]
        url = nc.connected_url
        assert url is not None
        if url.port == victim.info["port"]:  # keep the writer on a survivor: the write meets no reconnect
            await nc.close()
            nc = await bus.connect(str(next(c for c in cluster if c is not victim).info["url"]), name="writer")
            store = await bus.open_store(nc, "raise")
        victim.kill()

        async def put_after() -> bool:
            await store.services.put("after", b"2")
            return True

        await wait_for(put_after, timeout=40, interval=0.3, ignore=(Exception,),
                       message="no write after the bucket's first server died")
        c = await stream_cluster(nc, services_stream)
        assert c.get("leader") != holder
    finally:
        await nc.close()


async def test_a_running_controller_raises_replicas_once_its_cluster_has_grown(cluster: list[lab.Child]) -> None:
    """A controller started while its cluster was forming saw one server and made one copy of everything; once
    the client sees three, ``keep_replicas``'s check raises every opened stream to three."""
    names = Names("grown")
    await wait_formed(cluster, "grownprobe")
    nc = await bus.connect(urls_of(cluster), name="controller")
    try:
        store = bus.ClusterStore(nc, names, manage=True)
        store.replicas = 1  # as cluster_replicas said while the routes were not yet up
        await store.open()
        js = nc.jetstream(timeout=5.0)
        streams = [*streams_of(names)]
        assert {(await js.stream_info(s)).config.num_replicas for s in streams} == {1}
        assert await store.raise_replicas()
        assert store.replicas == 3
        assert {(await js.stream_info(s)).config.num_replicas for s in streams} == {3}
        assert not await store.raise_replicas()  # nothing more to do
        other = bus.ClusterStore(nc, Names("grownother"))  # not the controller's: never updates
        other.replicas = 1
        await other.open()
        assert not await other.raise_replicas()
        assert (await js.stream_info(f"KV_{other.names.services_bucket}")).config.num_replicas == 1
    finally:
        await nc.close()


async def test_an_open_that_cannot_reach_jetstream_gives_up_with_a_temporary_error(
    cluster: list[lab.Child], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two of three servers down: no stream can elect a leader; the open ends at its deadline."""
    await wait_formed(cluster, "quorum")
    nc = await bus.connect(str(cluster[0].info["url"]), name="opener")
    try:
        for c in cluster[1:]:
            c.kill()
        monkeypatch.setattr(bus, "OPEN_DEADLINE", 3.0)
        began = time.monotonic()
        with pytest.raises(TemporaryError, match="JetStream did not become ready"):
            await asyncio.wait_for(bus.open_store(nc, "quorum"), 30)
        assert time.monotonic() - began < 3.0 + 5.0  # the deadline and at most one ask's timeout
    finally:
        await nc.close()
