"""Gossip counters are bounded: forged incarnations/epochs of 2^64 - 1 (or far past the clock) are dropped."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drover.agent.gossip import codec
from drover.agent.gossip.identity import NodeKey
from drover.agent.gossip.state import FUTURE_SLACK_MS, Endpoint, EndpointEntry, Member, Status, plausible

KEY = b"k" * 32


def member(inc: int, epoch: int, status: Status = Status.DEAD) -> Member:
    return Member("b", "127.0.0.2", 7946, inc, status, epoch, ())


def entry(epoch: int, counter: int) -> EndpointEntry:
    ep = Endpoint(service="web", address="127.0.0.1", port=8080, node="b", container="c1", revision=1, ready=True)
    return EndpointEntry(ep, epoch, counter, True)


def roundtrip(u: object) -> object:
    signer = NodeKey.from_seed(b"a" * 32)
    body = codec.pack_all(codec.Kind.GOSSIP, "a", 1, [codec.encode_update(u)], nonce=1)[0]  # type: ignore[arg-type]
    return codec.decode(codec.seal_signed("a", body, KEY, signer), KEY).updates[0]


@pytest.mark.parametrize(
    "update",
    [member(2**64 - 1, 1), member(1, 2**64 - 1), member(2**63, 1), entry(2**64 - 1, 1), entry(1, 2**64 - 1)],
)
def test_counters_past_2_63_are_malformed(update: object) -> None:
    with pytest.raises(codec.MalformedError):
        roundtrip(update)


@given(st.integers(0, codec.MAX_COUNTER), st.integers(0, codec.MAX_COUNTER))
def test_in_range_counters_round_trip(inc: int, epoch: int) -> None:
    assert roundtrip(member(inc, epoch)) == member(inc, epoch)
    assert roundtrip(entry(epoch, inc)) == entry(epoch, inc)


@given(st.integers(0, 2 * FUTURE_SLACK_MS), st.integers(0, 2 * FUTURE_SLACK_MS))
def test_plausible_means_not_far_past_the_clock(ahead_inc: int, ahead_epoch: int) -> None:
    now = time.time_ns() // 1_000_000
    m = member(now + ahead_inc, now + ahead_epoch)
    assert plausible(m, now) == (ahead_inc <= FUTURE_SLACK_MS and ahead_epoch <= FUTURE_SLACK_MS)
    assert plausible(entry(now + ahead_epoch, 2**40), now) == (ahead_epoch <= FUTURE_SLACK_MS)
    # A refutation of any plausible claim (incarnation + 1) stays representable.
    assert m.incarnation + 1 <= codec.MAX_COUNTER
