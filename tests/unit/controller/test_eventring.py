"""EventRing: events kept as bytes are decoded once, when first read; those pushed out unread never are; an
undecodable one is dropped and counted."""

from __future__ import annotations

from typing import Any

import pytest

from drover.controller import eventring
from drover.controller.eventring import EventRing
from drover.shared.models import Event


def ev(i: int) -> Event:
    return Event(time=float(i), kind="scheduled", service="web", container=f"r{i}")


def test_decoded_once_when_read_and_never_when_pushed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[bytes] = []
    real = Event.from_wire

    class Counting:
        @staticmethod
        def from_wire(data: bytes) -> Any:
            decoded.append(data)
            return real(data)

    monkeypatch.setattr(eventring, "Event", Counting)
    ring = EventRing(maxlen=10)
    for i in range(1000):
        ring.append(ev(i).to_wire())
    assert decoded == [] and len(ring) == 10
    assert [e.container for e in ring] == [f"r{i}" for i in range(990, 1000)]
    assert len(decoded) == 10
    assert [e.container for e in reversed(ring)] == [f"r{i}" for i in range(999, 989, -1)]
    ring.append(ev(1000))  # an Event as such is kept as it is
    assert [e.container for e in ring][-2:] == ["r999", "r1000"] and len(decoded) == 10


def test_undecodable_is_dropped_and_counted() -> None:
    bad: list[int] = []
    ring = EventRing(maxlen=10, on_bad=lambda: bad.append(1))
    ring.append(ev(1).to_wire())
    ring.append(b"\xc1garbage")
    ring.append(ev(2).to_wire())
    assert [e.container for e in ring] == ["r1", "r2"] and bad == [1]
    assert [e.container for e in ring] == ["r1", "r2"] and bad == [1]  # counted once
