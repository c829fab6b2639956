"""Deciding node loss on fresh information only.

A node's silence counts only while this controller could have heard it: not while the controller was
disconnected from NATS, not across a reconnect, and not across a stall of its own event loop (SIGSTOP, a GC
pause, a busy loop), after which the heartbeats queued in its socket have not been read yet. Each of those
restarts the silence clock (``restart_clock``). And when most nodes fall silent together, the likely cause is
the control plane (a NATS restart, a partition of the controller), not the nodes: the controller then evicts
nothing (Kubernetes' full-disruption mode).

The decisions are pure functions; ``LoopWatch`` measures the loop's lag and the connection at the edge.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

# More than this fraction of the known nodes silent at once is a control-plane disruption.
DISRUPTION_FRACTION = 0.5
# While some nodes are still heard, a disruption holds evictions for at most this many node graces: past that
# the silent nodes are taken as really gone (a fleet that was stopped, a rack that lost power). Kubernetes
# likewise keeps evicting, only slower, when a zone is partially disrupted.
DISRUPTION_HOLD_GRACES = 10.0


def clock_restarts(*, connected: bool, reconnected: bool, lag: float, stall: float) -> bool:
    """True when the silence clock must restart now: the controller is disconnected (nothing can be heard),
    it reconnected (what was sent meanwhile is lost or still queued), or its loop stalled for ``stall``
    seconds or more (queued heartbeats are unread)."""
    return not connected or reconnected or lag >= stall


# A heartbeat's own send time is believed when it is at most this much older than its arrival (transit and
# ordinary clock skew); older ones only while the queue a stall left behind is being read (``heartbeat_time``).
SEND_TIME_GUARD = 1.0


def heartbeat_time(sent: object, received: float, restarted_at: float, *, drain: float,
                   guard: float = SEND_TIME_GUARD) -> float:
    """When a heartbeat counts as heard: its send time (the agent's ``time``), never later than its arrival.

    Dating by arrival made a controller resumed from a pause (SIGSTOP, a long GC) take the heartbeats queued
    in its socket — some sent by an agent killed meanwhile — as fresh, so a dead node looked alive for another
    node grace. The agent's clock is trusted only as far as it cannot keep a node alive or kill it:
    - never later than ``received`` (a clock ahead, or a lying agent, gains nothing);
    - up to ``guard`` seconds older than ``received``: believed (transit, small skew);
    - older than that: believed only within ``drain`` seconds after this controller's silence clock restarted
      (``restarted_at``: a stall or reconnect, when queued heartbeats are read late). Silence counts from
      that restart anyway (``silent_for``), so a node whose clock is far behind is not lost for it; outside
      that window such a heartbeat is dated by its arrival (a skewed clock, not a queue).
    A missing or non-numeric ``sent`` (an old agent) is dated by arrival."""
    if isinstance(sent, bool) or not isinstance(sent, (int, float)):
        return received
    at = float(sent)
    if at != at or at >= received:  # NaN, or a clock ahead
        return received
    if received - at <= guard or received - restarted_at <= drain:
        return at
    return received


def disrupted(silent: int, total: int, fraction: float = DISRUPTION_FRACTION) -> bool:
    """Most nodes silent at once: a control-plane disruption (needs at least two nodes to tell)."""
    return total >= 2 and silent > total * fraction


def evictions_held(silent: int, total: int, since: float | None, now: float, hold: float) -> bool:
    """Whether a disruption holds every eviction now. With every node silent nothing is heard at all (the
    controller is cut off; there is nowhere to move replicas to either): held for as long as it lasts. With
    some nodes still heard, the bus works for this controller: held for at most ``hold`` seconds from
    ``since`` (when the disruption began), then the silent nodes are treated as lost like any other."""
    if not disrupted(silent, total):
        return False
    if silent >= total or since is None:
        return True
    return now - since < hold


@dataclass
class LoopWatch:
    """Ticks every ``interval`` seconds, measures how late each tick is (the event loop's lag) and watches the
    NATS connection; calls ``on_restart(now)`` whenever the silence clock must restart.

    Narrow dependencies: ``connected()`` and ``reconnects()`` of the NATS client, a wall clock for the
    callback and a monotonic clock for the lag."""

    connected: Callable[[], bool]
    reconnects: Callable[[], int]
    on_restart: Callable[[float], None]
    # Called (after ``on_restart``) when the loop itself stalled (a pause, a long GC, a busy loop), not for a
    # reconnect: the read barrier's cue (controller/readbarrier.py).
    on_stall: Callable[[float], None] = lambda _now: None
    interval: float = 0.1
    stall: float = 1.0
    wall: Callable[[], float] = time.time
    mono: Callable[[], float] = time.monotonic
    last_tick: float = 0.0
    max_lag: float = 0.0
    stalls: int = 0

    def check(self) -> bool:
        """Measure now (also called by the reconcile loop before it acts, in case it wakes before the ticker
        after a stall). True when the clock was restarted."""
        now = self.mono()
        lag = max(0.0, now - self.last_tick - self.interval) if self.last_tick else 0.0
        self.last_tick = now
        self.max_lag = max(self.max_lag, lag)
        count = self.reconnects()
        reconnected = count != self._seen_reconnects
        self._seen_reconnects = count
        if clock_restarts(connected=self.connected(), reconnected=reconnected, lag=lag, stall=self.stall):
            wall = self.wall()
            self.on_restart(wall)
            if lag >= self.stall:
                self.stalls += 1
                self.on_stall(wall)
            return True
        return False

    _seen_reconnects: int = 0

    def begin(self) -> None:
        """Start measuring from now (``run`` does it; a caller that ticks ``check`` itself calls it first)."""
        self._seen_reconnects = self.reconnects()
        self.last_tick = self.mono()

    async def run(self) -> None:
        self.begin()
        while True:
            await asyncio.sleep(self.interval)
            self.check()
