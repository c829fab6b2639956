"""``drover up --nats-servers 3``'s JetStream cluster: buckets and the events stream get 3 replicas, and
writes continue on the remaining two servers when the one a client is connected to is SIGKILLed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
                  tmp_path / f"nats-{n.index}.log", info={"port": n.port, "url": n.url})
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
