"""Pure gossip state: order-independent merges, SWIM precedence, suspicion and refutation rules."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from drover.agent.gossip.state import (
    ClusterState,
    Endpoint,
    EndpointEntry,
    Member,
    Status,
    Update,
    declare_dead,
    expired_suspects,
    refute,
    retransmit_limit,
    scaled_suspicion_timeout,
    suspect,
)

NAMES = ["a", "b", "c"]


def member(name: str = "a", inc: int = 1, status: Status = Status.ALIVE, epoch: int = 1, port: int = 7946) -> Member:
    return Member(name, "127.0.0.1", port, inc, status, epoch)


def entry(
    origin: str = "a",
    container: str = "c1",
    *,
    epoch: int = 1,
    counter: int = 1,
    present: bool = True,
    ready: bool = True,
    port: int = 30000,
    service: str = "web",
) -> EndpointEntry:
    return EndpointEntry(Endpoint(service, "127.0.0.1", port, origin, container, 1, ready), epoch, counter, present)


def merged(updates: list[Update]) -> ClusterState:
    s = ClusterState()
    s.merge_all(updates)
    return s


def view(s: ClusterState) -> tuple[object, ...]:
    return (s.members, s.entries, s.floors, s.endpoints(ready_only=False), s.endpoints())


members_st = st.builds(
    Member,
    name=st.sampled_from(NAMES),
    address=st.sampled_from(["127.0.0.1", "127.0.0.2"]),
    port=st.sampled_from([7000, 7001]),
    incarnation=st.integers(0, 4),
    status=st.sampled_from(list(Status)),
    epoch=st.integers(0, 3),
)
entries_st = st.builds(
    EndpointEntry,
    endpoint=st.builds(
        Endpoint,
        service=st.sampled_from(["web", "api"]),
        address=st.just("127.0.0.1"),
        port=st.sampled_from([30000, 30001]),
        node=st.sampled_from(NAMES),
        container=st.sampled_from(["c1", "c2"]),
        revision=st.integers(1, 2),
        ready=st.booleans(),
    ),
    epoch=st.integers(0, 3),
    counter=st.integers(0, 5),
    present=st.booleans(),
)
updates_st = st.lists(st.one_of(members_st, entries_st), max_size=40)


# ---------------------------------------------------------------------- convergence
@settings(max_examples=300, deadline=None)
@given(updates=updates_st, data=st.data())
def test_merging_in_any_order_converges(updates: list[Update], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(updates))
    assert view(merged(updates)) == view(merged(shuffled))


@settings(max_examples=200, deadline=None)
@given(updates=updates_st, dup=st.lists(st.integers(0, 39), max_size=20))
def test_merging_is_idempotent(updates: list[Update], dup: list[int]) -> None:
    extra = [updates[i] for i in dup if i < len(updates)]
    assert view(merged(updates)) == view(merged(updates + extra))


@settings(max_examples=200, deadline=None)
@given(left=updates_st, right=updates_st)
def test_exchanging_snapshots_makes_two_states_equal(left: list[Update], right: list[Update]) -> None:
    a, b = merged(left), merged(right)
    a_snap, b_snap = a.snapshot(), b.snapshot()
    a.merge_all(b_snap)
    b.merge_all(a_snap)
    assert view(a) == view(b) == view(merged(left + right))


@settings(max_examples=200, deadline=None)
@given(updates=updates_st, data=st.data())
def test_split_delivery_in_batches_converges(updates: list[Update], data: st.DataObject) -> None:
    """Two nodes receive the same updates in different orders and batches: same table."""
    order = data.draw(st.permutations(updates))
    a, b = ClusterState(), ClusterState()
    for u in updates:
        a.merge(u)
    cut = data.draw(st.integers(0, len(order)))
    b.merge_all(order[cut:])
    b.merge_all(order[:cut])
    assert view(a) == view(b)


# ---------------------------------------------------------------------- member precedence (SWIM)
def test_suspect_beats_alive_at_same_incarnation_and_loses_to_higher() -> None:
    s = merged([member(inc=3)])
    assert s.merge(suspect(member(inc=3)))
    assert s.members["a"].status is Status.SUSPECT
    assert not s.merge(member(inc=3))  # an alive at the same incarnation does not clear a suspicion
    assert s.merge(member(inc=4))  # a refutation does
    assert s.members["a"].status is Status.ALIVE
    assert not s.merge(suspect(member(inc=3)))  # an old suspicion is stale


def test_dead_beats_suspect_and_alive_and_restart_overrides_dead() -> None:
    s = merged([member(inc=2), suspect(member(inc=2)), declare_dead(member(inc=2))])
    assert s.members["a"].status is Status.DEAD
    assert not s.merge(member(inc=2))
    assert not s.merge(suspect(member(inc=2)))
    assert s.merge(member(inc=1000, epoch=1000))  # restarted: new incarnation from the clock
    assert s.members["a"].status is Status.ALIVE


def test_left_beats_dead_at_same_incarnation() -> None:
    s = merged([member(inc=2, status=Status.DEAD)])
    assert s.merge(member(inc=2, status=Status.LEFT))
    assert not s.merge(member(inc=2, status=Status.DEAD))
    assert s.members["a"].status is Status.LEFT


# ---------------------------------------------------------------------- endpoints
def test_stale_endpoint_update_never_wins() -> None:
    s = merged([member(), entry(counter=5, present=False)])
    assert not s.merge(entry(counter=4, present=True))
    assert s.endpoints() == []
    assert s.merge(entry(counter=6))
    assert len(s.endpoints()) == 1


def test_endpoint_not_ready_is_hidden_unless_asked() -> None:
    s = merged([member(), entry(ready=False)])
    assert s.endpoints() == []
    assert [e.container for e in s.endpoints(ready_only=False)] == ["c1"]


def test_endpoints_of_dead_or_left_or_unknown_members_are_hidden() -> None:
    s = merged([entry(origin="a"), entry(origin="b", container="c2")])
    assert s.endpoints() == []  # members not known yet
    s.merge_all([member("a"), member("b")])
    assert {e.node for e in s.endpoints()} == {"a", "b"}
    s.merge(suspect(member("a")))
    assert {e.node for e in s.endpoints()} == {"a", "b"}  # a suspect still serves
    s.merge(declare_dead(member("a")))
    s.merge(member("b", status=Status.LEFT))
    assert s.endpoints() == []


def test_endpoint_filter_by_service() -> None:
    s = merged([member(), entry(container="c1", service="web"), entry(container="c2", service="api")])
    assert [e.container for e in s.endpoints("api")] == ["c2"]


def test_restart_wipes_endpoints_of_the_previous_life() -> None:
    s = merged([member(inc=5, epoch=1), entry(container="old", epoch=1, counter=9)])
    assert s.merge(member(inc=2000, epoch=2000))
    assert s.endpoints() == []
    assert not s.merge(entry(container="old", epoch=1, counter=10))  # a late copy of the old life
    assert s.merge(entry(container="new", epoch=2000, counter=1))
    assert [e.container for e in s.endpoints()] == ["new"]


def test_entry_of_a_newer_epoch_arriving_first_drops_older_ones() -> None:
    s = merged([member(epoch=1), entry(container="old", epoch=1)])
    s.merge(entry(container="new", epoch=2))
    assert set(k[1] for k in s.entries) == {"new"}


def test_forget_member_keeps_the_epoch_floor() -> None:
    s = merged([member(epoch=3), entry(epoch=3)])
    s.forget_member("a")
    assert s.members == {} and s.entries == {}
    assert not s.merge(entry(epoch=2))


# ---------------------------------------------------------------------- suspicion, refutation
def test_expired_suspects_only_at_the_suspected_incarnation() -> None:
    members = {"a": suspect(member("a", inc=3)), "b": suspect(member("b", inc=4)), "c": member("c")}
    suspected = {"a": (3, 10.0), "b": (3, 10.0), "c": (1, 10.0)}
    assert expired_suspects(members, suspected, now=10.5, timeout=0.6) == []
    dead = expired_suspects(members, suspected, now=10.7, timeout=0.6)
    assert dead == [declare_dead(members["a"])]  # b was refuted (inc 4), c is alive


def test_refute_raises_incarnation_above_the_claim() -> None:
    me = member(inc=7)
    for claim in (suspect(me), declare_dead(me), member(inc=9, status=Status.SUSPECT)):
        new = refute(me, claim)
        assert new is not None and new.status is Status.ALIVE
        assert new.incarnation == max(7, claim.incarnation) + 1
        assert new.epoch == me.epoch
        assert merged([claim, new]).members["a"] == new


def test_refute_ignores_its_own_and_older_records() -> None:
    me = member(inc=7)
    assert refute(me, me) is None
    assert refute(me, member(inc=6, status=Status.DEAD)) is None


def test_refute_an_earlier_life_with_a_later_epoch_moves_the_epoch() -> None:
    me = member(inc=100, epoch=100)
    ghost = member(inc=150, epoch=150)  # an earlier life whose clock ran ahead
    new = refute(me, ghost)
    assert new is not None and new.incarnation == 151 and new.epoch == 151


def test_a_node_that_left_does_not_refute() -> None:
    assert refute(member(inc=3, status=Status.LEFT), declare_dead(member(inc=3))) is None


def test_timeouts_and_retransmits_scale_with_cluster_size() -> None:
    assert scaled_suspicion_timeout(0.6, 50, scale=False) == 0.6
    assert scaled_suspicion_timeout(0.6, 100, scale=True) == 1.2
    assert scaled_suspicion_timeout(0.6, 1, scale=True) == 0.6
    assert retransmit_limit(4, 1) == 4
    assert retransmit_limit(4, 50) == 8
