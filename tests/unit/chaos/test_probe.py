"""What counts as converged: settled user states (rolled back, cordoned, a finished job) are, a service short
of replicas or a lost node is not."""

from __future__ import annotations

from drover.chaos.probe import observe


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
