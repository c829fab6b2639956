"""The replay window: no nonce accepted twice, nothing older than the window, memory bounded per sender."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from drover.agent.gossip.identity import NodeKey, Verifier, parse_public
from drover.agent.gossip.replay import FUTURE_SLACK_US, ReplayGuard, next_nonce

NOW = 1_800_000_000_000_000


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(NOW - 2_000, NOW)), max_size=300), st.integers(1, 16))
def test_a_nonce_is_accepted_once_and_memory_stays_bounded(packets: list[tuple[str, int]], per_sender: int) -> None:
    guard = ReplayGuard(max_age=1.0, per_sender=per_sender)
    accepted: set[tuple[str, int]] = set()
    for sender, nonce in packets:
        if guard.admit(sender, nonce, NOW):
            assert (sender, nonce) not in accepted
            accepted.add((sender, nonce))
        assert guard.size() <= 3 * per_sender


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=100))
def test_increasing_nonces_from_one_sender_are_all_accepted(gaps: list[int]) -> None:
    guard = ReplayGuard(max_age=10.0, per_sender=4)
    nonce = NOW - 5_000_000
    for g in gaps:
        nonce = next_nonce(nonce, nonce + g)
        assert guard.admit("a", nonce, NOW)


def test_stale_future_and_evicted_nonces_are_refused() -> None:
    guard = ReplayGuard(max_age=1.0, per_sender=2)
    assert not guard.admit("a", NOW - 1_000_001, NOW)
    assert not guard.admit("a", NOW + FUTURE_SLACK_US + 1, NOW)
    assert guard.admit("a", NOW - 10, NOW) and guard.admit("a", NOW - 5, NOW) and guard.admit("a", NOW, NOW)
    assert not guard.admit("a", NOW - 10, NOW)  # evicted: below everything kept, so it is a replay
    assert not guard.admit("a", NOW - 7, NOW)  # never seen, but older than the kept window
    assert guard.admit("b", NOW - 10, NOW)  # per sender
    guard.forget({"a"})
    assert guard.size() == 2


def test_next_nonce_is_strictly_increasing_even_when_the_clock_stands_still_or_steps_back() -> None:
    assert next_nonce(5, 3) == 6 and next_nonce(5, 5) == 6 and next_nonce(5, 9) == 9


def test_node_keys_sign_and_verify_and_parse() -> None:
    a, b = NodeKey.from_seed(b"a" * 32), NodeKey.generate()
    sig = a.sign(b"msg")
    v = Verifier()
    assert len(sig) == 64 and v.verify(a.public, sig, b"msg")
    assert not v.verify(b.public, sig, b"msg") and not v.verify(a.public, sig, b"msh")
    assert not v.verify(b"\x00" * 3, sig, b"msg")
    assert parse_public(a.public_hex) == a.public
    assert parse_public("") is None and parse_public("zz" * 32) is None and parse_public("00" * 31) is None


def test_the_key_is_kept_under_the_data_dir(tmp_path: object) -> None:
    from pathlib import Path

    d = Path(str(tmp_path))
    first = NodeKey.load_or_create(d)
    assert NodeKey.load_or_create(d).public == first.public
    assert (d / "gossip.key").stat().st_mode & 0o077 == 0
    (d / "gossip.key").write_bytes(b"damaged")
    assert NodeKey.load_or_create(d).public != first.public
