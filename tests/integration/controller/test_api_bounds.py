"""The controller enforces the input limits itself: requests written straight onto the bus (bypassing the
CLI) with huge numbers, deep nesting or too many ports get ``invalid`` with a field path, and the
controller keeps serving."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from drover.controller.config import ControllerConfig
from drover.controller.main import Controller
from drover.shared import bus, wire
from drover.shared.models import ApiReply
from drover.shared.subjects import Names
from tests.fixtures.nats import NatsServer

pytestmark = [pytest.mark.nats]


def manifest(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "drover/v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"image": "local/busybox:latest", "replicas": 0, **spec}}


@pytest.fixture
async def call(nats_server: NatsServer, cluster_name: str) -> AsyncIterator[Any]:
    ctl = Controller(ControllerConfig(nats_url=nats_server.url, cluster=cluster_name))
    await ctl.start()
    nc = await bus.connect(nats_server.url, name="test")

    async def request(verb: str, **body: Any) -> ApiReply:
        msg = await nc.request(Names(cluster_name).api(verb), wire.encode(body), timeout=20)
        return ApiReply.from_wire(msg.data)

    yield request
    await nc.drain()
    await ctl.stop()


async def test_bad_requests_off_the_bus_are_invalid_with_a_path(call: Any) -> None:
    deep: Any = "x"
    for _ in range(500):
        deep = [deep]
    cases = [
        (manifest(replicas=2**63), "request[doc 1] spec.replicas", "must be an integer <= 10000"),
        (manifest(stop_grace="1e9999999s"), "request[doc 1] spec.stop_grace", "is too large"),
        (manifest(resources={"memory": "1e9999999Ki"}), "request[doc 1] spec.resources.memory", "is too large"),
        (manifest(command=deep), "request[doc 1]", "too complex: nested more than 64 levels deep"),
        (manifest(ports=[{"container": p} for p in range(1, 102)]), "request[doc 1] spec.ports",
         "must have at most 100 items"),
        (manifest(placement={"constraints": ["node.labels.zone == a b"]}),
         "request[doc 1] spec.placement.constraints[0]", "a value with spaces must be quoted"),
    ]
    for doc, where, message in cases:
        reply = await call("apply", manifests=[doc])
        assert not reply.ok and reply.code == "invalid", (where, reply)
        assert [p["where"] for p in reply.problems] == [where], reply.problems
        assert message in reply.problems[0]["message"], reply.problems
    assert (await call("get_services")).data == []
    ok = await call("apply", manifests=[manifest(replicas=2)])
    assert ok.ok, ok
    too_many = await call("scale", name="web", replicas=10_001)
    assert not too_many.ok and too_many.code == "invalid"
    assert (await call("scale", name="web", replicas=10_000)).ok
