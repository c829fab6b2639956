"""The fault schedule: a pure function of (seed, duration, interval, kinds).

Slots every ``interval`` seconds (closer when needed so that every kind fits: with the default kinds any
run of 60 s or more injects each kind at least once); each slot holds one fault, and sometimes two at once.
Kinds are dealt from seeded shuffles of the list, so every kind comes before any repeats. Every fault
ends (is healed) before the run ends, leaving the tail of the run to converge.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Faults that are held for a while and then undone; the others are instant kills (the lab restarts the
# process, the agent the container).
HELD = ("partition", "gossip-partition", "pause")
KINDS = ("agent-kill", "controller-kill", "nats-kill", "partition", "gossip-partition", "container-kill", "pause")
LEAD_IN = 2.0  # s before the first fault: traffic and the monitor get a baseline
TAIL = 4.0  # s at the end without new faults, on top of the longest hold
MAX_HOLD = 7.0  # the longest a held fault lasts (hold_for)
TWO_AT_ONCE = 0.3  # probability that a slot gets a second, concurrent fault
MAX_TAIL_SHARE = 0.25  # the tail is at most this share of the run


@dataclass(frozen=True)
class Planned:
    at: float  # s from the start of the run
    kind: str
    hold: float  # s the fault stays before it is undone (0: instant)

    @property
    def ends(self) -> float:
        return self.at + self.hold


def parse_kinds(text: str) -> tuple[list[str], list[str]]:
    """``"a,b"`` → (kinds, unknown names); empty or ``all`` means every kind."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or names == ["all"]:
        return list(KINDS), []
    unknown = [n for n in names if n not in KINDS]
    kinds = list(dict.fromkeys(n for n in names if n in KINDS))
    return kinds, unknown


def hold_for(kind: str, rng: random.Random, spacing: float) -> float:
    """How long a held fault lasts: past the 3 s node grace / 2 s leader lease so that it matters, and
    at most a slot and a half so that faults overlap only sometimes."""
    if kind not in HELD:
        return 0.0
    low = 3.5 if kind != "pause" else 4.0  # pause: longer than the 2 s lease, twice over
    return round(min(max(low, rng.uniform(low, low + 3.0)), max(low, spacing * 1.5)), 2)


def _capped(hold: float, at: float, duration: float, tail: float) -> float:
    """Held faults end at least half the tail before the run ends."""
    return round(min(hold, max(0.0, duration - tail / 2 - at)), 2)


def make_schedule(seed: int, duration: float, interval: float, kinds: list[str]) -> list[Planned]:
    """The faults of one run, sorted by start time. Pure: the same arguments give the same schedule."""
    if not kinds or duration <= 0:
        return []
    rng = random.Random(seed)
    tail = min(TAIL + (MAX_HOLD if any(k in HELD for k in kinds) else 0.0), duration * MAX_TAIL_SHARE)
    usable = max(0.0, duration - LEAD_IN - tail)
    spacing = max(0.5, min(interval, usable / len(kinds))) if usable > 0 else interval
    slots = int(usable // spacing) + 1 if usable > 0 else 1
    deck: list[str] = []
    out: list[Planned] = []
    for i in range(slots):
        latest = LEAD_IN + usable  # the tail stays free of new faults
        at = round(min(LEAD_IN + i * spacing + rng.uniform(0, spacing * 0.2), latest), 2)
        if not deck:
            deck = list(kinds)
            rng.shuffle(deck)
        kind = deck.pop(0)
        out.append(Planned(at, kind, _capped(hold_for(kind, rng, spacing), at, duration, tail)))
        if len(kinds) > 1 and rng.random() < TWO_AT_ONCE:
            second = rng.choice([k for k in kinds if k != kind])
            at2 = round(min(at + rng.uniform(0.2, spacing * 0.5), latest), 2)
            out.append(Planned(at2, second, _capped(hold_for(second, rng, spacing), at2, duration, tail)))
    return sorted(out, key=lambda p: (p.at, p.kind))


__all__ = ["HELD", "KINDS", "Planned", "make_schedule", "parse_kinds"]
