"""What counts as converged: settled user states (rolled back, cordoned, a finished job) are, a service short
of replicas or a lost node is not; when a cut-off node is back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from drover.chaos.probe import Observation, node_ready_after, observe


def _svc(name: str, status: str, running: int, replicas: int) -> dict[str, object]:
    return {"name": name, "status": status, "running": running, "replicas": replicas}


def test_settled_user_states_are_converged() -> None:
    nodes = [{"name": "n1", "status": "ready"}, {"name": "n2", "status": "cordoned"},
             {"name": "n3", "status": "draining"}]
    services = [_svc("web", "available", 3, 3), _svc("old", "rolled-back", 2, 2), _svc("job", "succeeded", 0, 1)]
    o = observe(1.0, nodes, services)
    assert o.converged, o


def test_short_services_and_lost_nodes_are_not() -> None:
    o = observe(1.0, [{"name": "n1", "status": "ready"}], [_svc("web", "available", 2, 3)])
    assert not o.converged
    o = observe(1.0, [{"name": "n1", "status": "ready"}], [_svc("web", "rolled-back", 1, 2)])
    assert not o.converged
    o = observe(1.0, [{"name": "n1", "status": "lost"}], [_svc("web", "available", 3, 3)])
    assert not o.converged
    o = observe(1.0, [{"name": "n1", "status": "ready"}], [_svc("web", "progressing", 3, 3)])
    assert not o.converged


def test_a_killed_agent_is_ready_again_only_on_a_heartbeat_sent_after_the_kill() -> None:
    # The controller still shows a silent node ready for its node grace (and its views may be a moment old):
    # seen at 15.7 s on the dead agent's last heartbeat (11.9 s), the node was not back; its proxy failed
    # requests until the restarted agent's first heartbeat.
    wall0 = 1_000_000.0

    def row(beat: float, status: str = "ready") -> list[dict[str, object]]:
        stamp = datetime.fromtimestamp(wall0 + beat, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return [{"name": "n1", "status": status, "last_heartbeat": stamp}]

    obs = [
        observe(11.5, row(11.4), [], wall0),
        observe(15.7, row(11.9), [], wall0),  # killed at 12.1: stale
        observe(16.2, row(11.9, "not-ready"), [], wall0),
        observe(18.6, row(18.4), [], wall0),  # the restarted agent's first heartbeat
    ]
    assert obs[1].beats["n1"] == pytest.approx(11.9, abs=0.01)
    assert node_ready_after(obs, "n1", 12.1) == 18.6
    assert node_ready_after([Observation(15.7, {"n1": True}, {})], "n1", 12.1) == 15.7  # no heartbeat times
