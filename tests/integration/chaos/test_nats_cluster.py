"""``drover up --nats-servers 3``'s JetStream cluster: buckets and the events stream get 3 replicas, and
writes continue on the remaining two servers when the one a client is connected to is SIGKILLed; chaos's
``nats-kill`` kills a server only while every server is current (its /healthz)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drover.chaos import inject
from drover.chaos.inject import Injector, NoTarget, Undo
from drover.cli import lab
from drover.shared import bus
from tests.fixtures.nats import find_nats_server
from tests.fixtures.wait import wait_for


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[lab.Child]]:
    binary = find_nats_server()
    nodes = lab.nats_nodes(3, 0)
    children = [
        lab.Child(f"nats-{n.index}", "nats", lab.nats_server_argv(binary, tmp_path, n, nodes),
                  tmp_path / f"nats-{n.index}.log",
                  info={"port": n.port, "url": n.url, "monitor_port": n.monitor_port})
        for n in nodes
    ]
    for c in children:
        c.start()
    try:
        yield children
    finally:
        for c in children:
            c.kill()


async def test_writes_continue_when_a_server_dies(cluster: list[lab.Child]) -> None:
    urls = ",".join(str(c.info["url"]) for c in cluster)

    async def formed() -> bool:
        nc = await bus.connect(urls, name="probe")
        try:
            if bus.cluster_replicas(nc) < 3:
                return False
            await nc.jetstream(timeout=2.0).account_info()
            return True
        finally:
            await nc.close()

    await wait_for(formed, timeout=30, interval=0.3, ignore=(Exception,), message="cluster never formed")
    nc = await bus.connect(urls, name="writer")
    try:
        store = await bus.open_store(nc, "chaosnats")
        assert store.replicas == 3
        info = await store.js.stream_info("KV_drover_chaosnats_services")
        assert info.config.num_replicas == 3
        events = await store.js.stream_info(store.names.events_stream)
        assert events.config.num_replicas == 3
        await store.services.put("before", b"1")

        connected = nc.connected_url
        assert connected is not None
        [victim] = [c for c in cluster if c.info["port"] == connected.port]
        victim.kill()

        async def put_after() -> bool:
            await store.services.put("after", b"2")
            return True

        await wait_for(put_after, timeout=30, interval=0.2, ignore=(Exception,), message="no write after the kill")
        for i in range(20):  # and they keep succeeding on the remaining two
            await store.services.put(f"k{i}", str(i).encode())
        assert (await store.services.get("before")).value == b"1"
        assert (await store.services.get("k19")).value == b"19"
        assert nc.connected_url is not None and nc.connected_url.port != victim.info["port"]
    finally:
        await nc.close()


async def test_nats_kill_waits_until_every_server_is_current(
    cluster: list[lab.Child], monkeypatch: pytest.MonkeyPatch
) -> None:
    def state() -> dict[str, Any]:
        return {"processes": [{"kind": "nats", "name": c.name, "pid": c.pid, **c.info} for c in cluster]}

    async def all_current() -> bool:
        return all(await asyncio.gather(*(inject._nats_healthz(p) for p in state()["processes"])))

    async def none() -> list[tuple[str, str]]:
        return []

    async def no_leader() -> str | None:
        return None

    async def no_kill(_ident: str) -> None:
        raise AssertionError("no container is killed here")

    injector = Injector(rng=random.Random(1), state=state, leader=no_leader, containers=none, docker_kill=no_kill,
                        undo=Undo(), tag="t")
    await wait_for(all_current, timeout=60, interval=0.3, message="the servers never all reported /healthz ok")
    first = cluster[0]
    first.kill()  # down, not restarted: another kill now would leave one server of three
    monkeypatch.setattr(inject, "NATS_CURRENT_WAIT", 1.5)
    with pytest.raises(NoTarget, match="not all current"):
        await injector.inject("nats-kill", 0.0)
    assert all(c.alive() for c in cluster[1:])  # nothing was killed

    first.start()  # back: once it has caught up, a kill goes ahead
    monkeypatch.setattr(inject, "NATS_CURRENT_WAIT", 60.0)
    got = await injector.inject("nats-kill", 0.0)
    [victim] = [c for c in cluster if c.name == got.target]
    await wait_for(lambda: not victim.alive(), timeout=10, interval=0.1, message="the chosen server was not killed")
    assert sum(c.alive() for c in cluster) == 2
