"""Failure isolation on a real nats-server: a service whose stored record makes its rollout step raise is
reported (one event, a status message) and skipped, and never delays another service."""

from __future__ import annotations

import time
from typing import Any

from drover.shared.models import ServiceRecord
from tests.fixtures import wait_for
from tests.integration.controller.test_controller import env, manifest, placed  # noqa: F401 (env: fixture)


async def test_poison_service_does_not_delay_another(env: Any) -> None:  # noqa: F811
    ctl, agents, call = env
    for n in ("n1", "n2"):
        await agents.add(n)
    # A record no apply would accept, as a bug or another writer could leave it: its rollout step raises.
    poison = ServiceRecord(name="poison", spec={"image": "x", "update": {"max_surge": "lots"}}, replicas=2,
                           created=time.time(), updated=time.time())
    await agents.store.services.put("poison", poison.to_wire())
    await wait_for(lambda: "poison" in ctl.state.services, 10, message="poison record seen")

    t0 = time.monotonic()
    assert (await call("apply", manifests=[manifest(replicas=4)])).ok
    await wait_for(lambda: _total(call, "web", 4), 10, message="web placed despite the poison service")
    assert time.monotonic() - t0 < 5.0

    async def reported() -> bool:
        evs = [e for e in (await call("events", service="poison")).data if e["kind"] == "reconcile-failed"]
        return len(evs) == 1

    await wait_for(reported, 10, message="one reconcile-failed event for the poison service")
    rows = {r["name"]: r for r in (await call("get_services")).data}
    assert "rollout step failed" in rows["poison"]["message"]
    assert rows["poison"]["status"] != "available"
    assert rows["web"]["message"] == ""
    # The poison keeps failing every pass, yet is told once, and the reconcile task never crashed.
    await wait_for(lambda: _total(call, "web", 4), 10)
    evs = [e for e in (await call("events", service="poison")).data if e["kind"] == "reconcile-failed"]
    assert len(evs) == 1
    assert "reconcile" in (ctl.sup.names() if ctl.sup else [])
    # Scaling the healthy service still works while the poison stays.
    assert (await call("scale", name="web", replicas=2)).ok
    await wait_for(lambda: _total(call, "web", 2), 10, message="web scaled down")


async def _total(call: Any, service: str, n: int) -> bool:
    return sum((await placed(call, service)).values()) == n
