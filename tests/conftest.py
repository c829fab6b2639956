"""Shared pytest fixtures: a real nats-server, a real Docker engine, unique cluster names.

Integration tests need both engines and FAIL (never skip) when either is missing; run
``scripts/setup.sh`` (or ``scripts/test.sh``, which calls it) to install and start them.

Fixtures
  nats_server_factory   make(name=..., port=None, extra_args=(), start=True) -> NatsServer; all stopped at teardown
  nats_server           one started NatsServer (.url, .port, .stop(), .start(), .kill(), .astop(), .astart())
  secure_nats           one started SecureNats: TLS + JWT auth required (.url, .ca, .admin, .creds(role, cluster, node))
  docker_client         aiodocker.Docker whose engine answered ``version``
  busybox_image         "local/busybox:latest", checked to exist
  cluster_name          a unique cluster name per test ("t" + 8 hex chars)
  docker_cleanup        the cluster name; removes every container labelled with it at teardown
Helpers (``from tests.fixtures import ...``): wait_for, require_image, remove_cluster_containers, free_tcp_port.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import aiodocker
import pytest

from tests.fixtures.docker import (
    TEST_IMAGE,
    connect_docker,
    remove_cluster_containers,
    remove_cluster_containers_sync,
    require_image,
)
from tests.fixtures.nats import NatsServer, SecureNats

# Cluster names handed out in this session: swept once more at the end, in case a test started
# containers without asking for docker_cleanup (or crashed past it).
_issued_clusters: list[str] = []


# ---------------------------------------------------------------------- DROVER_HOME
@pytest.fixture(autouse=True, scope="session")
def _private_drover_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Components default to $DROVER_HOME (~/.drover) for state and keys (e.g. the cluster's secret key made
    by an in-process controller): a test session keeps them in a temporary directory, never the user's."""
    old = os.environ.get("DROVER_HOME")
    os.environ["DROVER_HOME"] = str(tmp_path_factory.mktemp("drover-home"))
    yield
    if old is None:
        os.environ.pop("DROVER_HOME", None)
    else:
        os.environ["DROVER_HOME"] = old


# ---------------------------------------------------------------------- NATS
@pytest.fixture
def nats_server_factory(tmp_path: Path) -> Iterator[Callable[..., NatsServer]]:
    servers: list[NatsServer] = []

    def make(
        name: str = "nats",
        *,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        start: bool = True,
    ) -> NatsServer:
        workdir = tmp_path / (name if not any(s.workdir.name == name for s in servers) else f"{name}-{len(servers)}")
        server = NatsServer(workdir, port=port, extra_args=extra_args)
        servers.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in servers:
        try:
            server.stop(timeout=5)
        except Exception:
            server.kill()


@pytest.fixture
def nats_server(nats_server_factory: Callable[..., NatsServer]) -> NatsServer:
    return nats_server_factory()


@pytest.fixture
def secure_nats(tmp_path: Path) -> Iterator[SecureNats]:
    """A started nats-server requiring TLS and JWT authentication (``.url``, ``.ca``, ``.admin``,
    ``.creds(role, cluster, node)``)."""
    server = SecureNats(tmp_path / "secure-nats").start()
    yield server
    server.stop()


# ---------------------------------------------------------------------- Docker
@pytest.fixture
async def docker_client() -> AsyncIterator[aiodocker.Docker]:
    docker = await connect_docker()
    try:
        yield docker
    finally:
        await docker.close()


@pytest.fixture
def busybox_image() -> str:
    return require_image(TEST_IMAGE)


@pytest.fixture
def cluster_name() -> str:
    name = f"t{uuid.uuid4().hex[:8]}"
    _issued_clusters.append(name)
    return name


@pytest.fixture
async def docker_cleanup(cluster_name: str) -> AsyncIterator[str]:
    yield cluster_name
    await remove_cluster_containers(cluster_name)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _issued_clusters:
        remove_cluster_containers_sync(_issued_clusters)
