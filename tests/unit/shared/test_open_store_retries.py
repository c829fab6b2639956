"""open_store asks each stream with a short, slowly growing timeout: while a stream leader is elected (a
nats-server just died) an open retries within about a second of JetStream answering again, instead of waiting
5 s per bucket (a restarted controller took 13 s to answer when a server died during its start). Every attempt
goes to the same store, which keeps what opened (tests/integration/chaos/test_store_open.py)."""

from __future__ import annotations

from typing import Any

import pytest

from drover.shared import bus


async def test_each_attempt_asks_the_streams_with_a_growing_short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    probes: list[float] = []
    stores: set[int] = set()

    class FakeNats:
        _server_info = {"version": "2.12.0", "jetstream": True}

        def jetstream(self, timeout: float) -> Any:
            return type("JS", (), {"timeout": timeout})()

    async def open_(self: bus.ClusterStore) -> bus.ClusterStore:
        probes.append(self._probe().timeout)  # type: ignore[attr-defined]
        stores.add(id(self))
        assert self.js.timeout == 5.0  # type: ignore[attr-defined]  # the store's own requests keep 5 s
        if len(probes) < 4:
            raise TimeoutError()  # no stream leader yet
        return self

    async def no_sleep(_s: float) -> None:
        return None

    monkeypatch.setattr(bus.ClusterStore, "open", open_)
    monkeypatch.setattr(bus.asyncio, "sleep", no_sleep)
    store = await bus.open_store(FakeNats(), "c")  # type: ignore[arg-type]
    assert isinstance(store, bus.ClusterStore)
    assert probes == [1.0, 1.25, 1.5, 1.75] and len(stores) == 1


def test_once_a_stream_has_answered_the_unanswered_are_asked_again_soon() -> None:
    # nothing answered yet: patient, growing
    assert [bus.probe_timeout(a, None) for a in (0, 1, 4, 40)] == [1.0, 1.25, 2.0, 5.0]
    # a responsive server (answers in 20 ms): the leaderless streams are asked again every half second
    assert [bus.probe_timeout(a, 0.02) for a in (0, 4, 40)] == [0.5, 0.5, 0.5]
    # a slow one (answers took 0.6 s): three times that, never beyond the patient bound
    assert bus.probe_timeout(8, 0.6) == pytest.approx(1.8)
    assert bus.probe_timeout(0, 0.6) == 1.0
