"""The CLI's request loop against a fake bus: an unanswered request is sent again (in more copies) until a
reply comes or the overall timeout passes; a write keeps one request id on every attempt; reads carry none."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from drover.cli.client import Client, attempt_waits
from drover.cli.context import Target
from drover.cli.errors import CliError
from drover.shared import wire
from drover.shared.models import ApiReply
from tests.unit.cli.fakebus import Inbox


@dataclass
class FakeMsg:
    data: bytes
    headers: dict[str, str] | None = None


class FakeNats:
    """``answer(n)`` says what the n-th published message (1-based) gets: a reply, a 503 or nothing (it went
    to a paused controller)."""

    max_payload = 1 << 20

    def __init__(self, answer: Callable[[int], FakeMsg | None]) -> None:
        self.answer = answer
        self.sent: list[tuple[str, dict[str, Any], str]] = []
        self.sub = Inbox()

    def new_inbox(self) -> str:
        return "_INBOX.test"

    async def subscribe(self, subject: str) -> Inbox:
        assert subject == "_INBOX.test"
        return self.sub

    async def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        self.sent.append((subject, wire.decode(payload), reply))
        msg = self.answer(len(self.sent))
        if msg is not None:
            self.sub.queue.put_nowait(msg)


def ok(data: Any) -> FakeMsg:
    return FakeMsg(ApiReply(ok=True, data=data).to_wire())


def client(nc: FakeNats) -> Client:
    c = Client(Target(nats="nats://127.0.0.1:1", cluster="t", nats_from="flag"))
    c._nc = nc  # type: ignore[assignment]
    c.first_attempt = 0.05
    return c


def test_attempts_grow_and_add_up_to_the_timeout() -> None:
    assert attempt_waits(10.0) == [1.5, 2.25, 3.375, 2.875]
    assert attempt_waits(1.0) == [1.0]
    assert sum(attempt_waits(60.0)) == pytest.approx(60.0)
    waits = attempt_waits(60.0)
    assert all(b > a for a, b in itertools.pairwise(waits[:-1]))


async def test_an_unanswered_write_is_sent_again_with_the_same_request_id() -> None:
    nc = FakeNats(lambda n: ok({"replicas": 3}) if n == 3 else None)  # the 1st and 2nd went to a paused one
    reply = await client(nc).request_raw("scale", {"name": "web", "replicas": 3}, timeout=5.0)
    assert reply.ok and reply.data == {"replicas": 3}
    assert len(nc.sent) == 3  # one, then two copies
    ids = {body["request_id"] for _, body, _ in nc.sent}
    assert len(ids) == 1 and all(len(i) == 32 for i in ids)
    assert {(subject, reply_to) for subject, _, reply_to in nc.sent} == {("drover.t.api.scale", "_INBOX.test")}
    assert nc.sub.unsubscribed


async def test_a_late_reply_to_the_first_attempt_still_counts() -> None:
    loop = asyncio.get_running_loop()
    nc = FakeNats(lambda n: None)

    def answer(n: int) -> None:  # a slow controller answers the first attempt after others were sent
        if n == 1:
            loop.call_later(0.3, nc.sub.queue.put_nowait, ok("first"))

    nc.answer = lambda n: answer(n)  # type: ignore[assignment,func-returns-value]
    reply = await client(nc).request_raw("get_services", {"name": None}, timeout=5.0)
    assert reply.data == "first"
    assert len(nc.sent) > 1  # it was sent again meanwhile
    assert all("request_id" not in body for _, body, _ in nc.sent)  # a read carries no id


async def test_no_reply_at_all_fails_after_the_overall_timeout() -> None:
    nc = FakeNats(lambda n: None)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(CliError, match=r"no controller answered .*timed out after 0\.5s"):
        await client(nc).request_raw("apply", {"manifests": []}, timeout=0.5)
    assert 0.5 <= loop.time() - began < 2.0
    assert len(nc.sent) > 3  # attempts were made
    assert len({body["request_id"] for _, body, _ in nc.sent}) == 1


async def test_no_responders_is_asked_again_while_a_controller_restarts() -> None:
    # the only controller is restarting: the first three copies find nobody, the fourth is answered
    nc = FakeNats(lambda n: FakeMsg(b"", {"Status": "503"}) if n <= 3 else ok({"replicas": 1}))
    reply = await client(nc).request_raw("scale", {"name": "web", "replicas": 1}, timeout=5.0)
    assert reply.ok and len(nc.sent) >= 4
    assert len({body["request_id"] for _, body, _ in nc.sent}) == 1


async def test_no_responders_fails_after_its_patience_within_the_timeout() -> None:
    nc = FakeNats(lambda n: FakeMsg(b"", {"Status": "503"}))
    c = client(nc)
    c.no_responders_patience = 0.5
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(CliError, match="no responders"):
        await c.request_raw("scale", {"name": "web", "replicas": 1}, timeout=5.0)
    assert 0.2 <= loop.time() - began < 1.5
    assert len(nc.sent) > 1


async def test_a_request_id_given_by_the_caller_is_kept() -> None:
    nc = FakeNats(lambda n: ok(None))
    await client(nc).request_raw("rollout_undo", {"name": "web", "request_id": "mine"}, timeout=1.0)
    assert nc.sent[0][1]["request_id"] == "mine"
