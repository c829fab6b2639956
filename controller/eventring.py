"""The controller's recent events, decoded when read (pure).

Events arrive from the stream in bursts — 10,000 replicas placed are 10,000 ``scheduled`` events, and as
many ``started`` ones from the agents — while only the newest ``maxlen`` are kept, and they are read only
when someone asks (``drover events``, ``describe``, the dashboard, the autoscaler's last decision). So each
is kept as the bytes it came as and decoded on the first read after it arrived (once: the decoded event
replaces the bytes); those pushed out unread are never decoded. An undecodable one, or one whose body names
a node its subject does not let it speak for (``models.decode_event``), is dropped then and counted through
``on_bad``.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator

from drover.shared.errors import WireError
from drover.shared.models import Event, decode_event

Raw = tuple[str, bytes]  # (subject, data) as delivered by the stream


class EventRing:
    def __init__(self, maxlen: int, on_bad: Callable[[], None] = lambda: None) -> None:
        self._items: collections.deque[Event | Raw] = collections.deque(maxlen=maxlen)
        self._raw = 0  # items still in their wire form
        self.on_bad = on_bad

    def append(self, item: Event | Raw) -> None:
        """An event, or its subject and wire form (decoded when first read)."""
        self._items.append(item)
        if isinstance(item, tuple):
            self._raw += 1

    def _settle(self) -> None:
        if not self._raw:
            return
        out: collections.deque[Event | Raw] = collections.deque(maxlen=self._items.maxlen)
        for item in self._items:
            if isinstance(item, tuple):
                try:
                    item = decode_event(*item)
                except WireError:
                    self.on_bad()
                    continue
            out.append(item)
        self._items, self._raw = out, 0

    def _events(self) -> collections.deque[Event]:
        self._settle()
        return self._items  # type: ignore[return-value]  # settled: events only

    def __iter__(self) -> Iterator[Event]:
        return iter(self._events())

    def __reversed__(self) -> Iterator[Event]:
        return reversed(self._events())

    def __len__(self) -> int:
        return len(self._items)
