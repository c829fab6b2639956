"""Control-plane disruption on a real nats-server: when most nodes fall silent at once, the controller moves
nothing and calls no node lost (one ``control-plane-disrupted`` event); when they speak again it says so and
everything is where it was. One silent node of three is still a lost node."""

from __future__ import annotations

import time
from typing import Any

from drover.shared.models import Assignment
from tests.fixtures import wait_for
from tests.integration.controller.test_controller import env, manifest  # noqa: F401 (env: fixture)

NODES = ("n1", "n2", "n3")


async def _placement(store: Any) -> dict[str, set[str]]:
    out = {}
    for n in NODES:
        e = await store.assignments.get(n)
        out[n] = {c.id for c in Assignment.from_wire(e.value).containers}
    return out


async def _kinds(call: Any) -> list[tuple[str, str]]:
    return [(e["kind"], e["node"]) for e in (await call("events", limit=0)).data]


async def test_most_nodes_silent_moves_nothing(env: Any) -> None:  # noqa: F811
    _ctl, agents, call = env  # node grace 1.5 s
    for n in NODES:
        await agents.add(n)
    assert (await call("apply", manifests=[manifest(replicas=6)])).ok

    async def ready() -> bool:
        rows = (await call("get_services", name="web")).data
        return bool(rows) and rows[0]["ready"] == 6

    await wait_for(ready, 15, message="6 ready")
    before = await _placement(agents.store)

    agents.alive -= {"n1", "n2"}  # two of three silent together
    await wait_for(lambda: _has(call, "control-plane-disrupted"), 10, message="disruption told")
    quiet = time.monotonic()
    await wait_for(lambda: time.monotonic() - quiet > 3.0, 10)  # twice the grace: a loss would have acted
    assert await _placement(agents.store) == before
    assert not [k for k in await _kinds(call) if k[0] in ("node-lost", "rescheduled")]

    agents.alive |= {"n1", "n2"}
    await wait_for(lambda: _has(call, "control-plane-recovered"), 10, message="recovery told")
    await wait_for(ready, 15)
    assert await _placement(agents.store) == before
    assert [k for k, _ in await _kinds(call)].count("control-plane-disrupted") == 1

    agents.alive.discard("n3")  # one of three: a real node loss, replaced
    await wait_for(lambda: _has(call, "node-lost"), 10, message="n3 lost")

    async def moved() -> bool:
        p = await _placement(agents.store)
        return not p["n3"] and sum(len(v) for v in p.values()) == 6

    await wait_for(moved, 15, message="n3's replicas moved")


async def _has(call: Any, kind: str) -> bool:
    return any(k == kind for k, _ in await _kinds(call))


async def test_nodes_silent_past_the_hold_while_others_answer_are_replaced(env: Any) -> None:  # noqa: F811
    """A stopped fleet is not a disruption forever: two of three nodes silent while the third answers hold
    every eviction for the hold (10 graces = 15 s here), then their replicas move to the node that answers,
    with a ``control-plane-disruption-expired`` event saying why."""
    _ctl, agents, call = env  # node grace 1.5 s
    for n in NODES:
        await agents.add(n)
    assert (await call("apply", manifests=[manifest(replicas=3)])).ok

    async def ready() -> bool:
        rows = (await call("get_services", name="web")).data
        return bool(rows) and rows[0]["ready"] == 3

    await wait_for(ready, 15, message="3 ready")
    agents.alive -= {"n1", "n2"}
    await wait_for(lambda: _has(call, "control-plane-disrupted"), 10, message="disruption told")
    started = time.monotonic()
    await wait_for(lambda: _has(call, "control-plane-disruption-expired"), 30, message="hold expired")
    assert time.monotonic() - started > 10.0  # (the hold is 15 s from the disruption's start)

    async def moved() -> bool:
        p = await _placement(agents.store)
        return not p["n1"] and not p["n2"] and len(p["n3"]) == 3

    await wait_for(moved, 15, message="the silent nodes' replicas moved to n3")
