"""Pair keys: the same on both ends, different for every other pair or cluster, derived once per peer and
derived anew when the peer's published key changes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from drover.agent.gossip.identity import NodeKey
from drover.agent.gossip.pairkeys import PairKeys, derive

KEY = b"cluster"
names = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=20)
seeds = st.binary(min_size=32, max_size=32)


@settings(max_examples=25, deadline=None)
@given(a=names, b=names, sa=seeds, sb=seeds, sc=seeds)
def test_both_ends_derive_the_same_key_and_nobody_else_does(a: str, b: str, sa: bytes, sb: bytes, sc: bytes) -> None:
    ka, kb, kc = NodeKey.from_seed(sa), NodeKey.from_seed(sb), NodeKey.from_seed(sc)
    ab = derive(KEY, a, ka, b, kb.public)
    assert ab is not None and ab == derive(KEY, b, kb, a, ka.public)
    if sc not in (sa, sb):
        # a third key pair, whatever name it claims, shares another secret with each end
        assert derive(KEY, a, kc, b, kb.public) != ab
        assert derive(KEY, b, kb, a, kc.public) != ab
    assert derive(KEY + b"x", a, ka, b, kb.public) != ab
    if a != b:
        assert derive(KEY, a + "x", ka, b, kb.public) != ab  # the names are part of the key


def test_keys_are_cached_per_peer_and_dropped_when_the_peer_key_changes() -> None:
    me, b, c = NodeKey.from_seed(b"m" * 32), NodeKey.from_seed(b"b" * 32), NodeKey.from_seed(b"c" * 32)
    pairs = PairKeys("me", me, KEY, {"b": b.public})
    kb = pairs.get("b")
    assert kb == derive(KEY, "me", me, "b", b.public) and pairs.get("b") is kb and len(pairs) == 1
    assert pairs.get("me") is None and pairs.get("nobody") is None
    pairs.trust({"b": b.public, "c": c.public})  # b unchanged: kept
    assert pairs.get("b") is kb
    b2 = NodeKey.from_seed(b"B" * 32)  # b restarted with a new key
    pairs.trust({"b": b2.public})
    assert len(pairs) == 0
    assert pairs.get("b") == derive(KEY, "me", me, "b", b2.public) != kb
    pairs.trust({})
    assert pairs.get("b") is None and len(pairs) == 0
    pairs.trust({"bad": b"\x00" * 32})  # a published key that is no usable point: no pair key
    assert pairs.get("bad") is None
