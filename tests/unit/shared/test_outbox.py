"""The events outbox: order, retries, and ``settled`` (a reader waits for its own events to be stored)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from drover.shared.models import Event
from drover.shared.outbox import EventOutbox


class Stream:
    """A fake JetStream stream: stores in order, refuses while ``down`` (as a publish without an ack)."""

    def __init__(self) -> None:
        self.stored: list[tuple[str, bytes]] = []
        self.ids: set[str] = set()
        self.down = False
        self.gate = asyncio.Event()
        self.gate.set()

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        await self.gate.wait()
        if self.down:
            raise TimeoutError("no ack")
        msg_id = headers["Nats-Msg-Id"]
        if msg_id not in self.ids:  # the duplicate window: a retried id is stored once
            self.stored.append((subject, data))
            self.ids.add(msg_id)


def ev(kind: str) -> Event:
    return Event(time=1.0, kind=kind)


@contextlib.asynccontextmanager
async def running(box: EventOutbox):  # type: ignore[no-untyped-def]
    task = asyncio.create_task(box.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_settled_returns_once_the_events_put_before_it_are_stored() -> None:
    stream = Stream()
    box = EventOutbox(stream.publish, lambda kind: f"ev.{kind}")
    async with running(box):
        box.put(ev("a"))
        box.put(ev("b"))
        await asyncio.wait_for(box.settled(), 5)
        assert [s for s, _ in stream.stored] == ["ev.a", "ev.b"]
        await asyncio.wait_for(box.settled(), 5)  # nothing new: answered at once
        assert len(stream.stored) == 2


async def test_settled_waits_through_an_outage_until_the_events_are_stored() -> None:
    stream = Stream()
    stream.down = True
    box = EventOutbox(stream.publish, lambda kind: f"ev.{kind}", timeout=0.2)
    async with running(box):
        box.put(ev("paused"))
        waiter = asyncio.create_task(box.settled())
        with pytest.raises(TimeoutError):  # not stored: the waiter is not released
            await asyncio.wait_for(asyncio.shield(waiter), 0.5)
        stream.down = False
        await asyncio.wait_for(waiter, 5)
        assert len(stream.stored) == 1


async def test_settled_does_not_wait_for_events_put_after_it() -> None:
    stream = Stream()
    box = EventOutbox(stream.publish, lambda kind: f"ev.{kind}")
    async with running(box):
        box.put(ev("a"))
        await asyncio.wait_for(box.settled(), 5)
        assert len(stream.stored) == 1
        stream.gate.clear()  # the next publishes hang
        waiter = asyncio.create_task(box.settled())
        await asyncio.sleep(0)  # the waiter takes its mark
        box.put(ev("b"))
        await asyncio.wait_for(waiter, 5)  # released although "b" hangs
        assert len(stream.stored) == 1
        stream.gate.set()
        await asyncio.wait_for(box.settled(), 5)
        assert len(stream.stored) == 2


async def test_events_dropped_by_a_full_outbox_count_as_settled() -> None:
    stream = Stream()
    stream.down = True
    box = EventOutbox(stream.publish, lambda kind: f"ev.{kind}", limit=2, timeout=0.1)
    box.put(ev("a"))  # not running: nothing leaves the queue but by dropping
    waiter = asyncio.create_task(box.settled())
    await asyncio.sleep(0)
    assert not waiter.done()
    box.put(ev("b"))
    box.put(ev("c"))  # drops "a"
    await asyncio.wait_for(waiter, 5)
    assert stream.stored == [] and box.dropped == 1
