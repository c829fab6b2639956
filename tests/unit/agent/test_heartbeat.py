"""HeartbeatSender: a heartbeat over the server's max payload is not sent (and not an exception); others are."""

from __future__ import annotations

from typing import Any

import structlog

from drover.agent.heartbeat import HeartbeatSender
from drover.shared.models import ContainerStatus, Heartbeat


class FakeNats:
    is_connected = True
    max_payload = 2000

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def publish(self, subject: str, data: bytes) -> None:
        self.sent.append((subject, data))


async def test_over_max_payload_is_skipped_and_small_is_sent() -> None:
    nc = FakeNats()
    count = {"n": 1}

    def build() -> Heartbeat:
        return Heartbeat(node="n1", containers=[ContainerStatus(id=f"r{i}") for i in range(count["n"])])

    sender = HeartbeatSender(lambda: nc, "drover.c.hb.n1", build, interval=1.0, log=structlog.get_logger())  # type: ignore[arg-type, return-value]
    await sender.send()
    assert len(nc.sent) == 1 and Heartbeat.from_wire(nc.sent[0][1]).node == "n1"
    count["n"] = 500  # far over 2000 bytes
    await sender.send()
    await sender.send()
    assert len(nc.sent) == 1 and sender._too_big_warned is not None
    count["n"] = 2
    await sender.send()
    assert len(nc.sent) == 2


async def test_no_connection_sends_nothing() -> None:
    calls: list[Any] = []
    sender = HeartbeatSender(lambda: None, "s", lambda: calls.append(1) or Heartbeat(node="n"), interval=1.0,
                             log=structlog.get_logger())
    await sender.send()
    assert calls == []
