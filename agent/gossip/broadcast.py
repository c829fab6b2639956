"""``BroadcastQueue``: the updates a gossip node still piggy-backs, least-sent first.

An update (member record or endpoint entry) replaces any queued one with the same key, and is dropped once
sent ``retransmit_mult * ceil(log10(n + 1))`` times in all (``n``: members known).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from drover.agent.gossip.state import Update, retransmit_limit, update_key

Key = tuple[Any, ...]


@dataclass
class _Broadcast:
    data: bytes
    sent: int = 0


class BroadcastQueue:
    def __init__(self, retransmit_mult: int) -> None:
        self.retransmit_mult = retransmit_mult
        self._items: dict[Key, _Broadcast] = {}

    def __len__(self) -> int:
        return len(self._items)

    def add(self, u: Update, data: bytes) -> None:
        """Queue ``u`` in its wire form ``data`` (origin-signed records are forwarded unchanged)."""
        self._items[update_key(u)] = _Broadcast(data)

    def queued(self) -> list[tuple[Key, bytes]]:
        """(key, encoded update) of everything queued, the least sent first."""
        return [(k, b.data) for k, b in sorted(self._items.items(), key=lambda kv: kv[1].sent)]

    def mark_sent(self, keys: Iterable[Key], members: int) -> None:
        limit = retransmit_limit(self.retransmit_mult, members)
        for k in keys:
            b = self._items.get(k)
            if b is None:
                continue
            b.sent += 1
            if b.sent >= limit:
                del self._items[k]
