"""Stall-safe node loss: the pure decisions (clock restarts, full disruption) and the plan under them."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from drover.controller.freshness import (
    DISRUPTION_HOLD_GRACES,
    LoopWatch,
    clock_restarts,
    disrupted,
    evictions_held,
    heartbeat_time,
)
from drover.controller.reconcile import plan
from drover.controller.snapshot import NodeState, node_status
from drover.controller.state import ClusterState
from drover.shared.models import Heartbeat, NodeStatus
from tests.unit.controller.test_reconcile import NOW, ac, node, snap, svc


def test_clock_restarts_on_disconnect_reconnect_and_stall() -> None:
    assert clock_restarts(connected=False, reconnected=False, lag=0.0, stall=1.0)
    assert clock_restarts(connected=True, reconnected=True, lag=0.0, stall=1.0)
    assert clock_restarts(connected=True, reconnected=False, lag=1.5, stall=1.0)
    assert not clock_restarts(connected=True, reconnected=False, lag=0.2, stall=1.0)


@given(st.integers(min_value=0, max_value=50), st.integers(min_value=0, max_value=50))
def test_disruption_is_most_nodes_silent(silent: int, total: int) -> None:
    silent = min(silent, total)
    assert disrupted(silent, total) == (total >= 2 and 2 * silent > total)


def test_one_lost_node_of_three_is_replaced_but_most_silent_moves_nothing() -> None:
    a = {"a": [ac("x")], "b": [ac("y")], "c": [ac("z")]}
    one = plan(snap([node("a"), node("b"), node("c", alive=False)], [svc("web", 3)], a), random.Random(1))
    assert not one.disrupted and one.assignments["c"] == []
    most = plan(snap([node("a"), node("b", alive=False), node("c", alive=False)], [svc("web", 3)], a),
                random.Random(1))
    assert most.disrupted and most.assignments == {} and most.events == []


@given(
    st.integers(min_value=0, max_value=50), st.integers(min_value=0, max_value=50),
    st.floats(min_value=0, max_value=1000), st.floats(min_value=0.1, max_value=100),
)
def test_evictions_held_only_while_it_could_be_the_control_plane(
    silent: int, total: int, age: float, hold: float
) -> None:
    silent = min(silent, total)
    held = evictions_held(silent, total, 0.0, age, hold)
    if not disrupted(silent, total):
        assert not held  # a minority silent: ordinary node losses
    elif silent == total:
        assert held  # nothing heard at all: never evict, however long
    else:
        assert held == (age < hold)  # some heard: the rest are really gone once the hold is over


def test_a_disruption_past_its_hold_while_others_answer_moves_the_silent_nodes_replicas() -> None:
    """A fleet stopped for good (most nodes silent while the rest answer) is not held forever: once the
    disruption is older than the hold, its replicas are replaced on the nodes that answer."""
    a = {"a": [ac("x")], "b": [ac("y")], "c": [ac("z")]}
    nodes = [node("a"), node("b", alive=False), node("c", alive=False)]
    fresh = snap(nodes, [svc("web", 3)], a)
    fresh.disrupted_since = fresh.now - 1.0
    assert plan(fresh, random.Random(1)).disrupted
    old = snap(nodes, [svc("web", 3)], a)
    old.disrupted_since = old.now - DISRUPTION_HOLD_GRACES * old.node_grace - 1.0
    p = plan(old, random.Random(1))
    assert not p.disrupted
    assert p.assignments["b"] == [] and p.assignments["c"] == []
    assert len(p.assignments["a"]) == 3


def test_silence_counts_only_from_the_clock_restart() -> None:
    """A controller that was stopped for 7 s (grace 3 s) restarts its silence clock on waking: heartbeats
    7 s old do not make the node lost, and only fresh silence afterwards does."""
    state = ClusterState(started=0.0, node_grace=3.0)
    state.on_heartbeat(Heartbeat(node="a"), NOW - 7)
    n: NodeState = state.nodes["a"]
    assert node_status(n, NOW, 3.0) is NodeStatus.LOST
    state.restart_silence_clock(NOW)
    assert node_status(n, NOW + 2.9, 3.0) is NodeStatus.READY
    assert node_status(n, NOW + 3.1, 3.0) is NodeStatus.LOST


def test_loop_watch_restarts_the_clock_after_a_stall_and_on_reconnect() -> None:
    t = [100.0]
    conn = [True]
    reconnects = [0]
    restarts: list[float] = []
    stalls: list[float] = []  # the read barrier's cue: stalls of the loop only
    w = LoopWatch(connected=lambda: conn[0], reconnects=lambda: reconnects[0], on_restart=restarts.append,
                  on_stall=stalls.append, interval=0.1, stall=1.0, wall=lambda: t[0], mono=lambda: t[0])
    w.last_tick = t[0]
    t[0] += 0.15
    assert not w.check()
    t[0] += 7.0  # SIGSTOP
    assert w.check() and restarts == [t[0]] and w.stalls == 1 and stalls == [t[0]]
    t[0] += 0.1
    reconnects[0] += 1
    assert w.check()
    t[0] += 0.1
    assert not w.check()
    conn[0] = False
    t[0] += 0.1
    assert w.check() and len(restarts) == 3
    assert len(stalls) == 1  # neither the reconnect nor the disconnection


# --- heartbeat_time: dated by send time, bounded ---------------------------------------------------------------

def test_a_heartbeat_is_dated_by_its_send_time_when_fresh() -> None:
    assert heartbeat_time(99.7, 100.0, 0.0, drain=3.0) == 99.7


def test_a_clock_ahead_or_a_lying_agent_never_dates_past_arrival() -> None:
    assert heartbeat_time(150.0, 100.0, 0.0, drain=3.0) == 100.0
    assert heartbeat_time(float("nan"), 100.0, 0.0, drain=3.0) == 100.0


def test_an_old_send_time_is_believed_only_while_a_stalls_queue_is_read() -> None:
    # read 0.5 s after the controller resumed from a pause: queued for 6 s, dated when sent
    assert heartbeat_time(94.0, 100.0, 99.5, drain=3.0) == 94.0
    # the same, long after any stall: a clock behind, not a queue; dated by arrival (never lost for it)
    assert heartbeat_time(94.0, 100.0, 50.0, drain=3.0) == 100.0


def test_no_usable_send_time_is_dated_by_arrival() -> None:
    assert heartbeat_time(None, 100.0, 99.9, drain=3.0) == 100.0
    assert heartbeat_time("99", 100.0, 99.9, drain=3.0) == 100.0
    assert heartbeat_time(True, 100.0, 99.9, drain=3.0) == 100.0
