"""``bus.request_retrying`` (agents' secret requests, dashboard actions) on a real nats-server: a request
that lands on a paused member of the controllers' queue group is sent again and answered by the live one;
one sent while nobody subscribes (the only controller restarting) is answered once one subscribes."""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
import pytest

from drover.agent.files import secret_fetcher
from drover.shared import bus, wire
from tests.fixtures.nats import NatsServer
from tests.fixtures.wait import wait_for


async def test_a_request_to_a_paused_member_is_sent_again_to_the_live_one(nats_server: NatsServer) -> None:
    nc = await bus.connect(nats_server.url, name="test")
    try:
        seen: list[str] = []

        async def paused(msg: Any) -> None:  # takes requests and never answers (SIGSTOPped)
            seen.append("paused")

        async def live(msg: Any) -> None:
            seen.append("live")
            await msg.respond(wire.encode({"ok": True, "data": b"s3cret"}))

        await nc.subscribe("drover.t.secrets.n1", queue="controllers", cb=paused)
        await nc.subscribe("drover.t.secrets.n1", queue="controllers", cb=live)
        fetch = secret_fetcher(nc, "drover.t.secrets.n1")
        for _ in range(8):  # each is a random pick of the two: some land on the paused one first
            assert await fetch("db") == b"s3cret"
        assert "paused" in seen
    finally:
        await nc.close()


async def test_a_request_while_nobody_subscribes_waits_for_a_subscriber(nats_server: NatsServer) -> None:
    nc = await bus.connect(nats_server.url, name="test")
    other = await bus.connect(nats_server.url, name="controller")
    try:
        async def answer(msg: Any) -> None:
            await msg.respond(b"yes")

        sent = nc.stats["out_msgs"]

        async def restart() -> None:
            # The controller comes back (drover up's restart) only once the request has met nobody twice.
            await wait_for(lambda: nc.stats["out_msgs"] >= sent + 2, timeout=5, message="never asked again")
            await other.subscribe("drover.t.api.scale", queue="controllers", cb=answer)
            await other.flush()

        task = asyncio.get_running_loop().create_task(restart())
        msg = await bus.request_retrying(nc, "drover.t.api.scale", b"{}", timeout=5.0)
        assert msg.data == b"yes"
        await task
        with pytest.raises(nats.errors.NoRespondersError):
            await bus.request_retrying(nc, "drover.t.api.nobody", b"{}", timeout=0.5)
    finally:
        await other.close()
        await nc.close()
