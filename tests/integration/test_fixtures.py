"""The shared fixtures themselves work: real nats-server with JetStream, real Docker engine, cleanup."""

from __future__ import annotations

import asyncio
import socket

import aiodocker
import nats
import pytest
from nats.js.api import KeyValueConfig, StorageType

from tests.fixtures import TEST_IMAGE, NatsServer, remove_cluster_containers, wait_for
from tests.fixtures.docker import list_cluster_containers

pytestmark = [pytest.mark.nats, pytest.mark.docker]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def test_wait_for_returns_value_and_times_out_with_message() -> None:
    calls = 0

    async def third_time() -> int:
        nonlocal calls
        calls += 1
        return calls if calls >= 3 else 0

    assert await wait_for(third_time, timeout=5, interval=0.01, message="never") == 3

    def failing() -> None:
        raise AssertionError("still not")

    with pytest.raises(AssertionError, match=r"the thing happened \(not within 0.2s; last error"):
        await wait_for(failing, timeout=0.2, interval=0.01, message="the thing happened")


async def test_nats_server_keeps_jetstream_data_across_restart(nats_server: NatsServer) -> None:
    url, port = nats_server.url, nats_server.port
    assert url.startswith("nats://127.0.0.1:")

    nc = await nats.connect(url)
    js = nc.jetstream()
    kv = await js.create_key_value(KeyValueConfig(bucket="fixture", storage=StorageType.FILE))
    await kv.put("greeting", b"hello")
    await nc.close()

    await nats_server.astop()
    assert not nats_server.running
    assert port is not None and not _accepts(port)

    await nats_server.astart()
    assert nats_server.url == url, "a restart must come back on the same port"

    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value("fixture")
        entry = await kv.get("greeting")
        assert entry.value == b"hello"
    finally:
        await nc.close()


async def test_nats_client_reconnects_after_restart(nats_server: NatsServer) -> None:
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    async def quiet(_: Exception) -> None:
        pass

    nc = await nats.connect(
        nats_server.url, reconnect_time_wait=0.1, max_reconnect_attempts=-1,
        reconnected_cb=on_reconnect, error_cb=quiet,
    )  # fmt: skip
    try:
        await nats_server.astop()
        await nats_server.astart()
        await asyncio.wait_for(reconnected.wait(), 10)
        assert (await nc.request("$JS.API.INFO", b"", timeout=2)).data
    finally:
        await nc.close()


async def test_docker_runs_the_local_image_and_cleans_up(
    docker_client: aiodocker.Docker, busybox_image: str, docker_cleanup: str
) -> None:
    cluster = docker_cleanup
    container = await docker_client.containers.create(
        {
            "Image": busybox_image,
            "Cmd": ["sh", "-c", "echo ok"],
            "Labels": {"drover.cluster": cluster, "drover.service": "fixture"},
            "HostConfig": {"Init": True, "NetworkMode": "none"},
        },
        name=f"drover-fixture-{cluster}",
    )
    await container.start()
    result = await asyncio.wait_for(container.wait(), 30)
    assert result["StatusCode"] == 0
    assert "".join(await container.log(stdout=True)).strip() == "ok"
    info = await container.show()
    assert info["HostConfig"]["Init"] is True

    await container.delete(force=True)
    assert await list_cluster_containers(docker_client, cluster) == []


async def test_remove_cluster_containers_removes_only_that_cluster(
    docker_client: aiodocker.Docker, busybox_image: str, docker_cleanup: str
) -> None:
    ours = docker_cleanup
    assert busybox_image == TEST_IMAGE
    container = await docker_client.containers.run(
        {
            "Image": busybox_image,
            "Cmd": ["sleep", "300"],
            "Labels": {"drover.cluster": ours},
            "HostConfig": {"Init": True, "NetworkMode": "none"},
        }
    )
    assert len(await list_cluster_containers(docker_client, ours)) == 1
    assert await remove_cluster_containers(f"{ours}-other", docker_client) == 0
    assert (await container.show())["State"]["Running"]

    assert await remove_cluster_containers(ours, docker_client) == 1
    assert await list_cluster_containers(docker_client, ours) == []
