"""EventRing: events kept as bytes are decoded once, when first read; those pushed out unread never are; an
undecodable one, or one naming a node its subject does not speak for, is dropped and counted."""

from __future__ import annotations

from typing import Any

import pytest

from drover.controller import eventring
from drover.controller.eventring import EventRing
from drover.shared.models import Event
from drover.shared.subjects import Names

SUBJECT = "drover.c1.events.scheduled"  # a controller's event: any node


def ev(i: int) -> Event:
    return Event(time=float(i), kind="scheduled", service="web", container=f"r{i}")


def test_decoded_once_when_read_and_never_when_pushed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[bytes] = []
    real = eventring.decode_event

    def counting(subject: str, data: bytes) -> Any:
        decoded.append(data)
        return real(subject, data)

    monkeypatch.setattr(eventring, "decode_event", counting)
    ring = EventRing(maxlen=10)
    for i in range(1000):
        ring.append((SUBJECT, ev(i).to_wire()))
    assert decoded == [] and len(ring) == 10
    assert [e.container for e in ring] == [f"r{i}" for i in range(990, 1000)]
    assert len(decoded) == 10
    assert [e.container for e in reversed(ring)] == [f"r{i}" for i in range(999, 989, -1)]
    ring.append(ev(1000))  # an Event as such is kept as it is
    assert [e.container for e in ring][-2:] == ["r999", "r1000"] and len(decoded) == 10


def test_undecodable_is_dropped_and_counted() -> None:
    bad: list[int] = []
    ring = EventRing(maxlen=10, on_bad=lambda: bad.append(1))
    ring.append((SUBJECT, ev(1).to_wire()))
    ring.append((SUBJECT, b"\xc1garbage"))
    ring.append((SUBJECT, ev(2).to_wire()))
    assert [e.container for e in ring] == ["r1", "r2"] and bad == [1]
    assert [e.container for e in ring] == ["r1", "r2"] and bad == [1]  # counted once


def test_an_event_naming_a_node_its_subject_does_not_speak_for_is_dropped() -> None:
    names = Names("c1")
    bad: list[int] = []
    ring = EventRing(maxlen=10, on_bad=lambda: bad.append(1))

    def on(node: str, kind: str = "died") -> bytes:
        return Event(time=1.0, kind=kind, node=node, container="r").to_wire()

    ring.append((names.node_event("n1", "died"), on("n1")))  # an agent about itself: kept
    ring.append((names.node_event("n1", "died"), on("n2")))  # agent n1 speaking for n2: dropped
    ring.append((names.node_event("n1", "died"), on("")))  # …or for no node: dropped
    ring.append((names.fleet_event("h", "h-3", "started"), on("h-3", "started")))  # a fleet's own node: kept
    ring.append((names.fleet_event("h", "x-3", "started"), on("x-3", "started")))  # outside its prefix: dropped
    ring.append((names.fleet_event("h", "h-3", "started"), on("h-4", "started")))  # another node: dropped
    ring.append((names.event("node-lost"), on("n2", "node-lost")))  # a controller's: any node
    assert [(e.kind, e.node) for e in ring] == [("died", "n1"), ("started", "h-3"), ("node-lost", "n2")]
    assert bad == [1, 1, 1, 1]
