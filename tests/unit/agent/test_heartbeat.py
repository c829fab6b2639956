"""HeartbeatSender: a heartbeat of any size goes out in parts within the server's max payload (none is dropped),
a container's entry is packed once while its status object stays the same, and a heartbeat that cannot be
cut to size is said, not raised."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog
from structlog.testing import capture_logs

from drover.agent import heartbeat as heartbeat_mod
from drover.agent.heartbeat import HeartbeatSender
from drover.controller.heartbeats import HeartbeatIntake
from drover.shared.models import ContainerStatus, Heartbeat
from tests.fixtures.wait import wait_for


class FakeNats:
    is_connected = True
    max_payload = 2000

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def publish(self, subject: str, data: bytes) -> None:
        self.sent.append((subject, data))


def received(sent: list[tuple[str, bytes]]) -> list[Heartbeat]:
    got: list[Heartbeat] = []
    intake = HeartbeatIntake(lambda _n, _t: False, lambda hb, _t: got.append(hb) or True)
    for subject, data in sent:
        intake.feed(subject.rsplit(".", 1)[-1], data, 0.0)
    return got


async def test_big_heartbeat_goes_out_in_parts_within_max_payload() -> None:
    nc = FakeNats()
    count = {"n": 1}
    statuses: dict[int, ContainerStatus] = {}

    def build() -> Heartbeat:
        return Heartbeat(node="n1", seq=len(nc.sent) + 1,
                         containers=[statuses.setdefault(i, ContainerStatus(id=f"r{i}")) for i in range(count["n"])])

    sender = HeartbeatSender(lambda: nc, "drover.c.hb.n1", build, interval=1.0, log=structlog.get_logger())  # type: ignore[arg-type, return-value]
    await sender.send()
    assert len(nc.sent) == 1
    count["n"] = 500  # far over 2000 bytes in one message
    with capture_logs() as logs:
        await sender.send()
    assert logs == []  # nothing refused, nothing said
    assert len(nc.sent) > 3 and all(len(d) <= nc.max_payload for _, d in nc.sent)
    hbs = received(nc.sent)
    assert [len(hb.containers) for hb in hbs] == [1, 500]
    assert [c.id for c in hbs[1].containers] == [f"r{i}" for i in range(500)]


async def test_entries_are_packed_once_per_status_object(monkeypatch: Any) -> None:
    nc = FakeNats()
    same = [ContainerStatus(id=f"r{i}") for i in range(20)]
    packed: list[object] = []
    real = heartbeat_mod.hbwire.pack_container
    monkeypatch.setattr(heartbeat_mod.hbwire, "pack_container", lambda s: packed.append(s) or real(s))
    sender = HeartbeatSender(lambda: nc, "drover.c.hb.n1", lambda: Heartbeat(node="n1", containers=list(same)),  # type: ignore[arg-type, return-value]
                             interval=1.0, log=structlog.get_logger())
    await sender.send()
    await sender.send()
    assert len(packed) == 20
    same[3] = ContainerStatus(id="r3", restarts=1)
    await sender.send()
    assert len(packed) == 21


async def test_a_heartbeat_that_cannot_be_cut_is_said_not_raised_once_a_minute() -> None:
    nc = FakeNats()
    rps = {f"service-{i}": 1.0 for i in range(200)}  # the header alone is over 2000 bytes
    sender = HeartbeatSender(lambda: nc, "drover.c.hb.n1", lambda: Heartbeat(node="n1", service_rps=rps),  # type: ignore[arg-type, return-value]
                             interval=1.0, log=structlog.get_logger())
    with capture_logs() as logs:
        for _ in range(3):
            await sender.send()
    assert nc.sent == []
    assert [(e["event"], e["too_big"]) for e in logs] == [("heartbeat not sent", True)]  # said once, not thrice


async def test_no_connection_sends_nothing() -> None:
    calls: list[Any] = []
    sender = HeartbeatSender(lambda: None, "s", lambda: calls.append(1) or Heartbeat(node="n"), interval=1.0,
                             log=structlog.get_logger())
    await sender.send()
    assert calls == []



async def test_the_first_heartbeat_after_a_reconnect_goes_out_at_once() -> None:
    """While disconnected the sender looks again every 0.1 s, not every interval: after a partition heals
    the node is heard as soon as its connection is back."""
    nc = FakeNats()
    nc.is_connected = False
    back = asyncio.Event()
    checks = {"n": 0}

    def before_send() -> None:
        checks["n"] += 1
        if checks["n"] == 3:  # the connection comes back between two attempts
            nc.is_connected = True
            back.set()

    sender = HeartbeatSender(lambda: nc, "drover.c.hb.n1", lambda: Heartbeat(node="n1", seq=1), interval=60.0,
                             before_send=before_send, log=structlog.get_logger())  # type: ignore[arg-type, return-value]
    sender.now()  # the first attempt at once (the agent sends one at start); the next ones on their own
    task = asyncio.ensure_future(sender.run())
    try:
        await asyncio.wait_for(back.wait(), 5)  # three attempts within 5 s, though the interval is 60 s
        await wait_for(lambda: len(nc.sent) == 1, 5, message="no heartbeat once the connection was back")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_hollow_fleet_says_an_unsent_heartbeat_once_a_minute_too() -> None:
    """The fleet shares the sender's helper: a refused publish is said once, not once per node and beat."""
    from drover.agent.fleet import FleetConfig, HollowFleet

    class Refusing(FakeNats):
        is_reconnecting = False

        async def publish(self, subject: str, data: bytes) -> None:
            raise ConnectionError("refused")

    class Node:
        def __init__(self, name: str) -> None:
            self.name = name

        def heartbeat(self, now: float, limit: int) -> list[bytes]:
            return [b"part"]

    fleet = HollowFleet(FleetConfig(nats_url="nats://127.0.0.1:1", prefix="p", count=2))
    fleet.nc = Refusing()  # type: ignore[assignment]
    with capture_logs() as logs:
        for name in ("p-1", "p-2", "p-1"):
            await fleet._beat(Node(name), 0.0)  # type: ignore[arg-type]
    assert fleet.heartbeats_sent == 0
    assert [(e["event"], e["node"]) for e in logs] == [("heartbeat not sent", "p-1")]
