"""A leader acts only while it can prove its lease: renewed within 3/4 of the TTL (monotonic clock)."""

from __future__ import annotations

from typing import Any

from drover.controller.leader import Elector, LeaderState


def test_holds_only_while_recently_renewed() -> None:
    t = [100.0]
    e = Elector(None, None, "b", "me", ttl=2, clock=lambda: t[0])  # type: ignore[arg-type]
    assert not e.holds()
    e.state = LeaderState(is_leader=True, term=3)
    e._renewed = t[0]
    t[0] += 1.4
    assert e.holds()
    t[0] += 0.2  # 1.6 s since the last renewal: the lease may be about to lapse (a pause, a partition)
    assert not e.holds()


def test_step_down_and_damaged_reported_once() -> None:
    told: list[Any] = []
    e = Elector(None, None, "b", "me", on_damaged=lambda k, err: told.append(k))  # type: ignore[arg-type]
    e.state = LeaderState(is_leader=True, term=3)
    e.step_down("a higher term")
    assert not e.state.is_leader
    e._damaged("lease", 7, "bad")
    e._damaged("lease", 7, "bad")
    e._damaged("lease", 8, "bad")
    assert told == ["lease", "lease"]
