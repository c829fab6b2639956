"""The read barrier on real controller processes and a real nats-server: a controller resumed from a pause
does not answer a read from the state it had before the pause.

While the controller is SIGSTOPped, services are written to the bucket (as another controller would) and a
``get_services`` request is queued in its socket behind those writes. Resumed, it must answer with every
service, or ``unavailable`` (it could not prove in time that it is current), never with the old list. And the
real CLI, given ``unavailable``, asks again and reaches another controller.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

from drover.shared import bus, wire
from drover.shared.models import ApiReply, ServiceRecord
from drover.shared.subjects import Names
from tests.fixtures import wait_for
from tests.fixtures.nats import NatsServer
from tests.integration.controller.test_paused_controller import Cluster, _manifest
from tests.integration.controller.test_stall import _stop

WRITTEN = 300  # services written during the pause: more than the server pushes to a stopped client at once
PAUSE = 1.5  # s: past the controller's stall threshold (1 s), so that it notices the pause


async def _write_services(store: bus.ClusterStore, template: ServiceRecord, names: list[str]) -> None:
    for name in names:
        await store.services.put(name, template.model_copy(update={"name": name}).to_wire())


async def _answers(nc: Any, names: Names) -> bool:
    try:
        msg = await nc.request(names.api("get_services"), wire.encode({"name": None}), timeout=2)
    except Exception:
        return False
    return ApiReply.from_wire(msg.data).ok


async def test_a_resumed_controller_never_answers_a_read_from_before_its_pause(
    nats_server: NatsServer, cluster_name: str, tmp_path: Any
) -> None:
    c = Cluster(nats_server.url, cluster_name, tmp_path)
    names = Names(cluster_name)
    nc = await bus.connect(nats_server.url, name="test")
    store = await bus.open_store(nc, cluster_name)
    c.start("ctl-a")
    proc = c.procs["ctl-a"]
    try:
        await wait_for(lambda: _answers(nc, names), 60)
        done = await asyncio.to_thread(c.cli, "apply", "-f", str(_manifest(tmp_path / "web.yaml", "web")))
        assert done.returncode == 0, done.stderr
        template = ServiceRecord.from_wire((await store.services.get("web")).value)
        written = [f"late{i}" for i in range(WRITTEN)]
        for round_ in range(3):  # each round: pause, write, queue a read, resume
            batch = [f"{n}-{round_}" for n in written]
            proc.send_signal(signal.SIGSTOP)
            stopped = time.monotonic()
            try:
                await _write_services(store, template, batch)
                inbox = nc.new_inbox()
                sub = await nc.subscribe(inbox)
                await nc.publish(names.api("get_services"), wire.encode({"name": None}), reply=inbox)
                await nc.flush()  # the request is in the stopped controller's socket, behind the writes
                await wait_for(lambda s=stopped: time.monotonic() - s >= PAUSE, 10)
            finally:
                proc.send_signal(signal.SIGCONT)
            reply = ApiReply.from_wire((await sub.next_msg(timeout=10)).data)
            await sub.unsubscribe()
            if reply.ok:
                shown = {row["name"] for row in reply.data}
                missing = set(batch) - shown
                assert not missing, f"round {round_}: stale, {len(missing)} services written in the pause missing"
            else:
                assert reply.code == "unavailable", reply
    finally:
        await asyncio.to_thread(_stop, proc)
        await nc.drain()


async def test_the_cli_asks_again_when_a_controller_is_unavailable(
    nats_server: NatsServer, cluster_name: str, tmp_path: Any
) -> None:
    """A controller that cannot prove it is current answers ``unavailable``: the real CLI asks again and gets
    its answer from the other controller. Here the unavailable one is a stand-in in the controllers' queue
    group that always says so: each command's request lands on it about half the time."""
    c = Cluster(nats_server.url, cluster_name, tmp_path)
    names = Names(cluster_name)
    nc = await bus.connect(nats_server.url, name="test")
    refused = 0

    async def unavailable(msg: Any) -> None:
        nonlocal refused
        refused += 1
        await msg.respond(ApiReply(ok=False, code="unavailable", error="catching up").to_wire())

    c.start("ctl-a")
    try:
        await wait_for(lambda: _answers(nc, names), 60)
        done = await asyncio.to_thread(c.cli, "apply", "-f", str(_manifest(tmp_path / "web.yaml", "web")))
        assert done.returncode == 0, done.stderr
        await nc.subscribe(f"{names.api_prefix}.*", queue="controllers", cb=unavailable)
        await nc.flush()
        for _ in range(8):
            out = await asyncio.to_thread(c.cli, "get", "services", "-o", "json")
            assert out.returncode == 0, out.stderr
            assert [row["name"] for row in json.loads(out.stdout)] == ["web"]
        assert refused > 0  # the stand-in was asked (the retries did the work)
        await asyncio.to_thread(_stop, c.procs["ctl-a"])
        # Only the unavailable one left: the command says so, within its timeout, exit 1.
        began = time.monotonic()
        out = await asyncio.to_thread(c.cli, "get", "services")
        assert out.returncode == 1 and "catching up" in out.stderr, out
        assert time.monotonic() - began < 20
    finally:
        for proc in c.procs.values():
            await asyncio.to_thread(_stop, proc)
        await nc.drain()
