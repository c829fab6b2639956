"""The lease is renewed on a thread of its own: a leader whose event loop is busy for seconds keeps it, while a
standby controller process waits to take over; a loop stuck past the busy limit lets it go, and a SIGSTOPped
leader process loses it within about the lease TTL (real nats-server, real controller processes)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drover.controller.config import ControllerConfig
from drover.controller.leader import Lease, open_leader_bucket, read_lease
from drover.controller.main import Controller
from drover.shared import bus
from drover.shared.subjects import Names
from tests.fixtures import wait_for
from tests.fixtures.nats import NatsServer
from tests.integration.controller.test_stall import _stop

pytestmark = [pytest.mark.nats]

DROVER = str(Path(sys.executable).parent / "drover")


def _controller(url: str, cluster: str, ident: str, home: Path) -> subprocess.Popen[bytes]:
    log = (home / f"{ident}.log").open("wb")
    try:
        return subprocess.Popen(
            [DROVER, "controller", "--nats", url, "--cluster", cluster, "--id", ident],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "DROVER_HOME": str(home)},
        )
    finally:
        log.close()


def _started(home: Path, ident: str) -> bool:
    path = home / f"{ident}.log"
    return path.exists() and "controller started" in path.read_text(errors="replace")


def _hog(seconds: float) -> None:
    """Keep the calling thread (here: the event loop) computing, as a huge plan or apply would."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(1000))


@pytest.fixture
async def busy(nats_server: NatsServer, cluster_name: str, tmp_path: Path) -> AsyncIterator[Controller]:
    """An in-process leader (its loop is this test's loop) and a standby controller process."""
    ctl = Controller(ControllerConfig(nats_url=nats_server.url, cluster=cluster_name, id="busy"))
    await ctl.start()
    standby = None
    try:
        await wait_for(lambda: ctl.is_leader, 15, message="the in-process controller leads")
        standby = _controller(nats_server.url, cluster_name, "standby", tmp_path)
        await wait_for(lambda: _started(tmp_path, "standby"), 30, message="the standby runs")
        yield ctl
    finally:
        if standby is not None:
            await asyncio.to_thread(_stop, standby)
        await ctl.stop()


async def _lease(ctl: Controller) -> Lease:
    lease = await read_lease(ctl.leader_kv)
    assert lease is not None
    return lease


async def test_a_leader_busy_for_seconds_keeps_its_lease(busy: Controller) -> None:
    ctl = busy
    before = await _lease(ctl)
    assert before.id == "busy"
    _hog(5.0)  # 2.5 lease TTLs without the loop getting a turn
    assert ctl.is_leader, "the lease was not proven held right after the busy spell"
    after = await _lease(ctl)
    assert (after.id, after.term) == ("busy", before.term), "the standby took the lease over"
    assert ctl.state.term == before.term


async def test_a_loop_stuck_past_the_busy_limit_lets_the_lease_go(busy: Controller) -> None:
    ctl = busy
    before = await _lease(ctl)
    assert ctl.elector is not None
    ctl.elector.busy_limit = 1.5  # (15 s in production)
    _hog(6.0)
    assert not ctl.is_leader

    async def standby_leads() -> bool:
        lease = await read_lease(ctl.leader_kv)
        return lease is not None and lease.id == "standby" and lease.term > before.term

    await wait_for(standby_leads, 15, message="the standby took over")
    assert not ctl.is_leader


async def test_a_sigstopped_leader_process_loses_its_lease(
    nats_server: NatsServer, cluster_name: str, tmp_path: Path
) -> None:
    procs = {i: _controller(nats_server.url, cluster_name, i, tmp_path) for i in ("ctl-a", "ctl-b")}
    nc = await bus.connect(nats_server.url, name="test")
    try:
        await bus.open_store(nc, cluster_name)
        kv = await open_leader_bucket(nc.jetstream(), Names(cluster_name).leader_bucket)
        await wait_for(lambda: all(_started(tmp_path, i) for i in procs), 30, message="both controllers run")
        first = await wait_for(lambda: read_lease(kv), 15, message="a leader", ignore=(Exception,))
        procs[first.id].send_signal(signal.SIGSTOP)
        t0 = time.monotonic()

        async def other_leads() -> Lease | None:
            lease = await read_lease(kv)
            return lease if lease is not None and lease.id != first.id else None

        second = await wait_for(other_leads, 15, interval=0.05, message="the other controller took over",
                                ignore=(Exception,))
        took = time.monotonic() - t0
        assert second.term == first.term + 1
        assert took < 5.0, f"failover took {took:.2f}s"  # ≈ the 2 s TTL (+ a renewal interval, load)
    finally:
        for p in procs.values():
            await asyncio.to_thread(_stop, p)
        await nc.drain()
