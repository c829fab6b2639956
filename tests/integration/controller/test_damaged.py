"""Damaged state on a real nats-server: garbage written into the assignments, services and leader buckets is
reported once each (``record-damaged``), the assignment and the leader records are rewritten, the service
record is ignored, and the cluster keeps converging."""

from __future__ import annotations

from typing import Any

from drover.controller.leader import LEASE_KEY, TERM_KEY, read_lease
from drover.shared.models import Assignment
from tests.fixtures import wait_for
from tests.integration.controller.test_controller import env, manifest, placed  # noqa: F401 (env: fixture)

GARBAGE = b"\xc1 not a record \xff"


async def _damage_events(call: Any) -> list[dict[str, Any]]:
    return [e for e in (await call("events", limit=0)).data if e["kind"] == "record-damaged"]


async def _ids(ctl: Any) -> set[str]:
    return {c.id for a in ctl.state.assignments.values() for c in a.value.containers}


async def test_garbage_in_every_bucket_is_reported_once_and_repaired(env: Any) -> None:  # noqa: F811
    ctl, agents, call = env
    for n in ("n1", "n2"):
        await agents.add(n)
    assert (await call("apply", manifests=[manifest(replicas=4)])).ok
    await wait_for(lambda: _total(call, 4), 10, message="4 placed")
    await wait_for(lambda: ctl.is_leader, 10)
    before_ids = await _ids(ctl)
    term_before = ctl.state.term
    store = agents.store

    await store.assignments.put("n1", GARBAGE)
    await store.services.put("junk", GARBAGE)
    leader_kv = ctl.leader_kv
    await leader_kv.put(TERM_KEY, b"x")
    await leader_kv.put(LEASE_KEY, GARBAGE)

    async def reported() -> bool:
        keys = sorted((e["node"] or e["service"] or e["message"].split("'")[1]) for e in await _damage_events(call))
        return keys == sorted(["n1", "junk", LEASE_KEY, TERM_KEY])

    await wait_for(reported, 20, message="one record-damaged event per damaged record")

    # The assignment is rewritten from the controller's view: the same replicas, decodable again.
    async def n1_repaired() -> bool:
        e = await store.assignments.get("n1")
        return Assignment.from_wire(e.value).node == "n1"

    await wait_for(n1_repaired, 10, message="assignment of n1 rewritten", ignore=(Exception,))
    assert await _ids(ctl) == before_ids  # nothing was moved or restarted by the repair

    # An election takes place again, with a term above every term an assignment carries.
    async def elected() -> bool:
        lease = await read_lease(leader_kv)
        return lease is not None and lease.term > term_before and ctl.is_leader

    await wait_for(elected, 15, message="leader re-elected over the damaged lease and term", ignore=(Exception,))
    term_entry = await leader_kv.get(TERM_KEY)
    assert int(term_entry.value or b"0") > term_before

    # The damaged service record is ignored; the cluster keeps converging.
    rows = {r["name"] for r in (await call("get_services")).data}
    assert rows == {"web"}
    assert (await call("scale", name="web", replicas=6)).ok
    await wait_for(lambda: _total(call, 6), 10, message="scaled to 6 after the damage")
    # Still one event each: nothing is retried in a loop.
    assert len(await _damage_events(call)) == 4


async def _total(call: Any, n: int) -> bool:
    return sum((await placed(call, "web")).values()) == n
