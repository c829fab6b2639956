"""Usage measurements: cpu/memory from Docker stats samples, the proxy's connection rate, stream lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from drover.agent.proxy import ProxyStats
from drover.agent.usage import ContainerUsage, RateMeter, UsageCollector, requests_of, working_set
from drover.shared.models import AssignedContainer, Assignment, ContainerState, ContainerStatus, Heartbeat, spec_of
from tests.fixtures import wait_for


def sample(second: int, cpu_ns: int, usage: int = 40 << 20, inactive: int = 8 << 20) -> dict[str, Any]:
    return {
        "read": f"2026-01-01T00:00:{second:02d}.000000000Z",
        "cpu_stats": {"cpu_usage": {"total_usage": cpu_ns}},
        "memory_stats": {"usage": usage, "stats": {"total_inactive_file": inactive}},
    }


def test_cpu_percent_of_the_request_and_memory_working_set() -> None:
    u = ContainerUsage(cpu_request=0.25, memory_request=64 << 20)
    u.add(sample(0, 0), 0.0)
    assert u.cpu_percent() is None  # one point is no rate
    u.add(sample(1, 250_000_000), 1.0)  # 0.25 s of cpu in 1 s = the whole 0.25 request
    u.add(sample(2, 375_000_000), 2.0)  # then half of it
    assert u.cpu_percent() == 75.0  # averaged over the window: 0.375 s in 2 s = 0.1875 cpu
    assert u.memory_percent() == 50.0  # 40Mi - 8Mi inactive of 64Mi
    assert working_set({"memory_stats": {"usage": 100, "stats": {"inactive_file": 30}}}) == 70
    for s in range(3, 12):
        u.add(sample(s, 375_000_000 + (s - 2) * 250_000_000), float(s))
    assert u.cpu_percent() == 100.0  # the window forgot the slower start


def test_requests_of_a_spec() -> None:
    assert requests_of(spec_of({"image": "i", "resources": {"cpu": 0.1, "memory": 1024}})) == (0.1, 1024.0)
    assert requests_of(spec_of({"image": "i", "resources": {"cpu": 0, "memory": 0}})) == (None, None)


def test_rate_meter_per_service() -> None:
    m = RateMeter(window=5.0)
    assert m.rates({"web": ProxyStats(connections=10)}, 0.0) == {}
    stats = {"web": ProxyStats(connections=30), "web:admin": ProxyStats(connections=5), "db": ProxyStats()}
    assert m.rates(stats, 2.0) == {"web": 12.5, "db": 0.0}
    # A proxy re-created (counter back to 0) is skipped for a round, never reported negative.
    assert "web" not in m.rates({"web": ProxyStats(connections=1)}, 3.0)


def status(rid: str, cid: str, started: float = 1.0, state: ContainerState = ContainerState.RUNNING) -> ContainerStatus:
    return ContainerStatus(id=rid, container_id=cid, service="web", state=state, started_at=started)


async def test_one_stream_per_running_autoscaled_container() -> None:
    opened: list[str] = []
    feed: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def source(cid: str) -> AsyncIterator[dict[str, Any]]:
        opened.append(cid)
        while True:
            yield await feed.get()

    col = UsageCollector(driver=None, source=source, clock=lambda: 100.0)  # type: ignore[arg-type]
    scaled = {"image": "x", "resources": {"cpu": 0.5, "memory": 100 << 20}, "autoscale": {"min": 1}}
    plain = {"image": "x", "resources": {"cpu": 0.5}}
    a = Assignment(node="n", containers=[
        AssignedContainer(id="a", service="web", revision=1, spec=scaled),
        AssignedContainer(id="b", service="web", revision=1, spec=scaled),
        AssignedContainer(id="c", service="db", revision=1, spec=plain),
    ])
    col.sync(a, [status("a", "ca"), status("b", "cb", state=ContainerState.EXITED), status("c", "cc")])
    assert col.streaming() == ["ca"]
    for s in range(3):  # the first sample is skipped
        feed.put_nowait(sample(s, s * 500_000_000, usage=50 << 20, inactive=0))
    await wait_for(lambda: col.annotate([status("a", "ca")])[0].cpu_percent == 100.0)
    hb = col.fill(Heartbeat(node="n", containers=[status("a", "ca"), status("c", "cc")]), None)
    assert [(c.cpu_percent, c.memory_percent) for c in hb.containers] == [(100.0, 50.0), (None, None)]
    # Restarted in place (new start time): a fresh stream; stopped: none.
    col.sync(a, [status("a", "ca", started=2.0)])
    assert col.streaming() == ["ca"]
    await wait_for(lambda: opened == ["ca", "ca"])
    col.sync(a, [status("a", "ca", started=2.0, state=ContainerState.EXITED)])
    assert col.streaming() == []
    await col.stop()
