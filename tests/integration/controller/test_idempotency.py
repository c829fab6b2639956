"""Retried writes on a real nats-server: undo with the same request id moves once, delete and node control
are compare-and-set and harmless when repeated."""

from __future__ import annotations

import asyncio
from typing import Any

from drover.shared.models import Event, NodeControl
from tests.fixtures import wait_for
from tests.integration.controller.test_controller import env, manifest  # noqa: F401 (env: fixture)


async def _revision(call: Any) -> int:
    return int((await call("get_services", name="web")).data[0]["revision"])


async def test_retried_writes_do_not_act_twice(env: Any) -> None:  # noqa: F811
    _ctl, agents, call = env
    await agents.add("n1")
    assert (await call("apply", manifests=[manifest(replicas=1)])).ok
    assert (await call("apply", manifests=[manifest(replicas=1, env={"A": "2"})])).ok
    await wait_for(lambda: _is(call, 2), 10)

    first = await call("rollout_undo", name="web", request_id="req-1")
    assert first.ok and first.data["revision"] == 3  # the spec of 1, as a new revision (kubectl)
    retry = await call("rollout_undo", name="web", request_id="req-1")
    assert retry.ok and retry.data["revision"] == 3  # not undone again (which would make 4)
    assert await _revision(call) == 3
    undos = [e for e in (await call("events", service="web")).data if e["kind"] == "rollout-undo"]
    assert len(undos) == 1
    stale = await call("rollout_undo", name="web", from_revision=2)
    assert not stale.ok and "not undone" in stale.error and await _revision(call) == 3

    for _ in range(2):  # cordon twice, then drain: absolute changes of what is stored
        assert (await call("cordon", node="n1")).ok
    assert (await call("drain", node="n1")).ok
    e = await agents.store.nodectl.get("n1")
    assert NodeControl.from_wire(e.value) == NodeControl(cordoned=True, draining=True)
    assert (await call("uncordon", node="n1")).ok

    assert (await call("delete", names=["web"])).ok
    again = await call("delete", names=["web"])
    assert not again.ok and again.code == "not-found"


async def _is(call: Any, rev: int) -> bool:
    return await _revision(call) == rev


async def test_pause_and_resume_events_say_what_happened(env: Any) -> None:  # noqa: F811
    _ctl, agents, call = env
    await agents.add("n1")
    assert (await call("apply", manifests=[manifest(replicas=1)])).ok
    assert (await call("rollout_pause", name="web")).ok
    assert (await call("apply", manifests=[manifest(replicas=1, env={"A": "2"})])).ok
    undo = await call("rollout_undo", name="web")
    assert undo.ok and undo.data == {"name": "web", "revision": 3, "paused": True}  # stored, rolls out on resume
    assert (await call("rollout_resume", name="web")).ok
    rows = [(e["kind"], e["message"]) for e in (await call("events", service="web")).data
            if e["kind"].startswith("rollout-")]
    assert rows == [("rollout-paused", "rollout paused at revision 1"),
                    ("rollout-undo", "undo to revision 1: desired again as revision 3"),
                    ("rollout-resumed", "rollout resumed at revision 3")]


async def test_events_stored_by_others_before_a_request_are_in_its_reply(env: Any) -> None:  # noqa: F811
    """An agent's events (or another controller's) stored before an events request are in its reply: the
    reply waits (briefly) until the controller's copy reached the stream's last event."""
    ctl, agents, call = env
    await agents.add("n1")
    deliver = ctl.eventlog._on_message
    held: list[tuple[int, str, bytes]] = []

    def late(seq: int, subject: str, data: bytes) -> None:  # a loaded controller: its copy lags 0.3 s
        held.append((seq, subject, data))
        asyncio.get_running_loop().call_later(0.3, lambda: deliver(*held.pop(0)))

    ctl.eventlog._on_message = late
    subject = agents.names.node_event("n1", "started")
    for i in range(3):
        ev = Event(time=float(i), kind="started", node="n1", service="web", message=f"run {i}")
        await agents.store.js.publish(subject, ev.to_wire())
        rows = [e["message"] for e in (await call("events", service="web")).data if e["kind"] == "started"]
        assert rows[-1:] == [f"run {i}"]
