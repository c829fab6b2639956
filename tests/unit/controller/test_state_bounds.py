"""Heartbeats of unregistered nodes are bounded in number and expire."""

from __future__ import annotations

from drover.controller import state as st
from drover.shared.models import Heartbeat, NodeRegistration


def test_unregistered_nodes_are_bounded_and_expire() -> None:
    cs = st.ClusterState(started=0.0, node_grace=3.0)
    for i in range(st.MAX_UNREGISTERED + 50):
        cs.on_heartbeat(Heartbeat(node=f"forged-{i}"), now=10.0)
    assert len(cs.nodes) == st.MAX_UNREGISTERED
    # A registered node is not counted, and its heartbeats are always taken.
    cs.set_registration(NodeRegistration(name="real"), "real", now=10.0)
    assert cs.on_heartbeat(Heartbeat(node="real"), now=11.0)
    assert "real" in cs.nodes and "real" not in cs.unregistered
    # Past the TTL the silent unregistered ones go, and new names are accepted again.
    later = 10.0 + st.UNREGISTERED_TTL + 1
    cs.on_heartbeat(Heartbeat(node="late"), now=later)
    assert "late" in cs.nodes and "forged-0" not in cs.nodes
    assert set(cs.nodes) == {"real", "late"}
