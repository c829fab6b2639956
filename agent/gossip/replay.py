"""``ReplayGuard``: drop gossip datagrams that are too old or were already seen, in bounded memory.

Every datagram carries its sender's nonce: microseconds of the sender's wall clock, made strictly increasing
(``next_nonce``), so it also grows across restarts. A receiver accepts a nonce from a (verified) sender only
when it is
* within ``max_age`` behind and ``FUTURE_SLACK`` ahead of its own clock (hosts' clocks are assumed to be
  NTP-synchronised well within ``max_age``), and
* not among the last ``per_sender`` nonces it accepted from that sender, and, once that many are kept, above
  the smallest of them (everything older was either accepted already or is a replay).
The guard keeps at most ``per_sender`` nonces per sender, and senders are only ever nodes with a published
key, so memory is bounded by cluster size; ``forget`` drops senders that left the directory.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection

from drover.agent.gossip.state import FUTURE_SLACK_MS

FUTURE_SLACK_US = FUTURE_SLACK_MS * 1000


def next_nonce(last: int, now_us: int) -> int:
    return max(last + 1, now_us)


class ReplayGuard:
    def __init__(self, max_age: float = 60.0, per_sender: int = 256) -> None:
        self.max_age_us = int(max_age * 1_000_000)
        self.per_sender = per_sender
        self._seen: dict[str, tuple[list[int], set[int]]] = {}

    def admit(self, sender: str, nonce: int, now_us: int) -> bool:
        """True (and remembered) for a fresh nonce; False for a stale, future or repeated one."""
        if nonce < now_us - self.max_age_us or nonce > now_us + FUTURE_SLACK_US:
            return False
        heap, seen = self._seen.setdefault(sender, ([], set()))
        if nonce in seen or (len(heap) >= self.per_sender and nonce <= heap[0]):
            return False
        heapq.heappush(heap, nonce)
        seen.add(nonce)
        if len(heap) > self.per_sender:
            seen.discard(heapq.heappop(heap))
        return True

    def forget(self, keep: Collection[str]) -> None:
        for name in [n for n in self._seen if n not in keep]:
            del self._seen[name]

    def size(self) -> int:
        return sum(len(h) for h, _ in self._seen.values())
