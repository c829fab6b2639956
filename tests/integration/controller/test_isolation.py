"""Failure isolation on a real nats-server: a service whose stored record holds a spec no apply would accept
(a bug or another writer could leave it) is reported once and held, and never delays another service. (Since
specs are typed, such a record no longer reaches a rollout step: it does not decode. A step that raises for
any other reason is isolated the same way: ``tests/unit/controller/test_reconcile.py``.)"""

from __future__ import annotations

import time
from typing import Any

from drover.shared import wire
from tests.fixtures import wait_for
from tests.integration.controller.test_controller import env, manifest, placed  # noqa: F401 (env: fixture)


async def test_poison_service_does_not_delay_another(env: Any) -> None:  # noqa: F811
    ctl, agents, call = env
    for n in ("n1", "n2"):
        await agents.add(n)
    # A record in the form every version writes, with a spec validation refuses (a max_surge of "lots").
    poison = {"name": "poison", "spec": {"image": "x", "update": {"max_surge": "lots"}}, "replicas": 2,
              "created": time.time(), "updated": time.time()}
    await agents.store.services.put("poison", wire.encode(poison))

    async def reported() -> bool:
        evs = [e for e in (await call("events", limit=0)).data if e["kind"] == "record-damaged"]
        return [e["service"] for e in evs] == ["poison"]

    await wait_for(reported, 10, message="one record-damaged event for the poison service")
    assert "poison" not in ctl.state.services

    t0 = time.monotonic()
    assert (await call("apply", manifests=[manifest(replicas=4)])).ok
    await wait_for(lambda: _total(call, "web", 4), 10, message="web placed despite the poison service")
    assert time.monotonic() - t0 < 5.0
    rows = {r["name"]: r for r in (await call("get_services")).data}
    assert set(rows) == {"web"} and rows["web"]["message"] == ""
    # Told once, never retried in a loop; the reconcile task never crashed.
    await wait_for(lambda: _total(call, "web", 4), 10)
    evs = [e for e in (await call("events", limit=0)).data if e["kind"] == "record-damaged"]
    assert len(evs) == 1
    assert "reconcile" in (ctl.sup.names() if ctl.sup else [])
    # Scaling the healthy service still works while the poison stays.
    assert (await call("scale", name="web", replicas=2)).ok
    await wait_for(lambda: _total(call, "web", 2), 10, message="web scaled down")


async def _total(call: Any, service: str, n: int) -> bool:
    return sum((await placed(call, service)).values()) == n
