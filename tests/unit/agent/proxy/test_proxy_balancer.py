"""The pure endpoint choice: round-robin and least-connections, with exclusion."""

from __future__ import annotations

import collections

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drover.agent.proxy.balancer import (
    Backend,
    LeastConnections,
    RoundRobin,
    make_balancer,
    pick_least_connections,
    pick_round_robin,
)


def pool(n: int) -> tuple[Backend, ...]:
    return tuple(Backend("127.0.0.1", 10000 + i, f"c{i}") for i in range(n))


sizes = st.integers(min_value=1, max_value=12)


@given(n=sizes, rounds=st.integers(1, 5), start=st.integers(0, 1000))
def test_round_robin_visits_every_backend_equally(n: int, rounds: int, start: int) -> None:
    backends = pool(n)
    cursor = start
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(n * rounds):
        backend, cursor = pick_round_robin(backends, cursor)
        assert backend is not None
        seen[backend.key] += 1
    assert seen == {b.key: rounds for b in backends}


@given(n=sizes, cursor=st.integers(0, 1000), data=st.data())
def test_round_robin_never_picks_excluded(n: int, cursor: int, data: st.DataObject) -> None:
    backends = pool(n)
    exclude = data.draw(st.sets(st.sampled_from([b.key for b in backends])))
    backend, nxt = pick_round_robin(backends, cursor, exclude)
    if len(exclude) == n:
        assert backend is None and nxt == cursor
    else:
        assert backend is not None and backend.key not in exclude
        # The first backend at or after the cursor that is not excluded.
        order = [backends[(cursor + i) % n] for i in range(n)]
        assert backend == next(b for b in order if b.key not in exclude)


def test_empty_list_gives_none() -> None:
    assert pick_round_robin((), 5) == (None, 5)
    assert pick_least_connections((), {}, 5) == (None, 5)
    assert RoundRobin().pick(()) is None
    assert LeastConnections().pick(()) is None


@given(
    counts=st.lists(st.integers(0, 5), min_size=1, max_size=10),
    cursor=st.integers(0, 100),
    data=st.data(),
)
def test_least_connections_picks_a_least_busy_backend(counts: list[int], cursor: int, data: st.DataObject) -> None:
    backends = pool(len(counts))
    active = {b.key: c for b, c in zip(backends, counts, strict=True) if c}
    exclude = data.draw(st.sets(st.sampled_from([b.key for b in backends])))
    backend, _ = pick_least_connections(backends, active, cursor, exclude)
    allowed = [c for b, c in zip(backends, counts, strict=True) if b.key not in exclude]
    if not allowed:
        assert backend is None
    else:
        assert backend is not None and backend.key not in exclude
        assert active.get(backend.key, 0) == min(allowed)


def test_least_connections_rotates_among_equals() -> None:
    lc = LeastConnections()
    backends = pool(3)
    picks = [lc.pick(backends) for _ in range(6)]  # nothing acquired: all tied at 0
    assert [b.key for b in picks if b] == ["c0", "c1", "c2", "c0", "c1", "c2"]


def test_least_connections_accounting() -> None:
    lc = LeastConnections()
    backends = pool(2)
    first = lc.pick(backends)
    assert first is not None
    lc.acquire(first.key)
    second = lc.pick(backends)
    assert second is not None and second != first
    lc.acquire(second.key)
    lc.acquire(second.key)
    assert lc.pick(backends) == first  # 1 against 2
    lc.release(second.key)
    lc.release(second.key)
    lc.release(first.key)
    assert dict(lc.active) == {}  # released to zero: forgotten
    lc.release("never-seen")  # harmless
    assert dict(lc.active) == {}


def test_retry_does_not_move_the_shared_cursor() -> None:
    """One dead backend in front of a live one costs every other connection a retry, not every one."""
    rr = RoundRobin()
    backends = pool(2)  # say c0 is dead
    first = rr.pick(backends)
    assert first is not None and first.key == "c0"
    retry = rr.pick(backends, exclude={"c0"})
    assert retry is not None and retry.key == "c1"
    nxt = rr.pick(backends)
    assert nxt is not None and nxt.key == "c1"  # the next connection starts after c0, as without the retry


def test_cursor_survives_a_shrinking_list() -> None:
    rr = RoundRobin()
    for _ in range(5):
        rr.pick(pool(4))
    picked = rr.pick(pool(2))
    assert picked is not None and picked.key in {"c0", "c1"}


def test_make_balancer() -> None:
    assert isinstance(make_balancer("round-robin"), RoundRobin)
    assert isinstance(make_balancer("least-connections"), LeastConnections)
    with pytest.raises(ValueError, match="unknown proxy strategy"):
        make_balancer("fastest")
