"""Bounded I/O on a real agent: a process printing a line over 64 KiB keeps its reader (later lines and its
exit are still seen), a Docker container with a multi-megabyte log answers `logs` with a bounded reply, and
log requests over the agent's cap are refused at once. Real nats-server, real Docker."""

from __future__ import annotations

from typing import Any

import aiodocker
import pytest

from drover.agent import logs_api
from drover.agent.drivers.lines import MAX_LINE, TRUNCATED
from drover.shared import wire
from tests.fixtures import wait_for
from tests.fixtures.nats import NatsServer
from tests.integration.agent_support import replica, running, running_agent, tap

pytestmark = [pytest.mark.nats]

HUGE_LINE = "head -c 300000 /dev/zero | tr '\\0' x; echo"  # one line of 300 kB


async def _ask(t: Any, node: str, body: dict[str, Any]) -> dict[str, Any]:
    msg = await t.nc.request(t.names.agent_api(node, "logs"), wire.encode(body), timeout=10)
    reply: dict[str, Any] = wire.decode(msg.data)
    return reply


async def test_process_line_over_64k_does_not_kill_its_reader(nats_server: NatsServer, cluster_name: str) -> None:
    cmd = ["sh", "-c", f"echo before; {HUGE_LINE}; echo after; sleep 0.5; exit 3"]
    async with (
        tap(nats_server.url, cluster_name) as t,
        running_agent(nats_server.url, cluster_name, "p1", driver="process") as agent,
    ):
        await t.assign("p1", [replica("b1", service="big", command=cmd, ports=[], restart="never")])
        # The exit is only seen when the reader got past the long line to the end of the output.
        st = await wait_for(lambda: (s := t.statuses("p1").get("b1")) and s.state == "exited" and s, 15)
        assert st.exit_code == 3
        reply = await _ask(t, "p1", {"container": "b1", "tail": 10, "follow": False})
        assert reply["ok"], reply
        lines = reply["lines"]
        assert lines[0] == "before" and lines[2] == "after" and len(lines) == 3
        assert lines[1] == "x" * MAX_LINE + TRUNCATED
        assert agent.sup is not None and not agent.sup.failed.done()


@pytest.mark.docker
async def test_docker_logs_are_bounded_and_capped(
    nats_server: NatsServer,
    docker_client: aiodocker.Docker,
    docker_cleanup: str,
    busybox_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logs_api, "MAX_REQUESTS", 1)
    monkeypatch.setattr(logs_api, "ALIVE_TIMEOUT", 1.0)
    cluster = docker_cleanup
    # ~3.5 MB of log: 20,000 numbered lines of ~160 bytes, then one 300 kB line, then a last line; then it
    # keeps running.
    pad = "-" + "p" * 150
    cmd = ["sh", "-c", f"seq 1 20000 | sed 's/^/line-/; s/$/{pad}/'; {HUGE_LINE}; echo the-end; exec sleep 300"]
    async with tap(nats_server.url, cluster) as t, running_agent(nats_server.url, cluster, "n1"):
        await t.assign("n1", [replica("g1", service="chatty", command=cmd, ports=[])])
        await wait_for(lambda: (s := t.statuses("n1").get("g1")) and s.state == "running", 20)

        async def whole() -> dict[str, Any] | None:
            reply = await _ask(t, "n1", {"container": "g1", "tail": None, "follow": False})
            return reply if reply.get("ok") and reply["lines"] and reply["lines"][-1] == "the-end" else None

        reply = await wait_for(whole, 20, message="logs without --tail")
        lines = reply["lines"]
        assert len(wire.encode(reply)) < 1024 * 1024  # fits a NATS message
        assert sum(len(x) for x in lines) <= logs_api.MAX_REPLY and reply["truncated"]
        assert lines[-2] == "x" * MAX_LINE + TRUNCATED and lines[-3].startswith("line-20000-")
        assert not any(line == "line-1-" for line in lines)  # the oldest lines were left out

        tail = await _ask(t, "n1", {"container": "g1", "tail": 1, "follow": False})
        assert tail["ok"] and tail["lines"] == ["the-end"] and not tail["truncated"]
        monkeypatch.setattr(logs_api, "DEFAULT_TAIL", 50)  # no --tail: the agent's default tail applies
        short = await _ask(t, "n1", {"container": "g1", "tail": None, "follow": False})
        assert short["ok"] and 3 <= len(short["lines"]) <= 50 and short["lines"][-1] == "the-end"

        # One follow stream takes the only slot: another request is refused at once, then served again.
        stream = t.nc.new_inbox()
        got: list[dict[str, Any]] = []

        async def on_stream(msg: Any) -> None:
            got.append(wire.decode(msg.data))

        await t.nc.subscribe(stream, cb=on_stream)
        follow = await _ask(t, "n1", {"container": "g1", "tail": 1, "follow": True, "stream": stream})
        assert follow["ok"] and follow["lines"] == ["the-end"]
        refused = await _ask(t, "n1", {"container": "g1", "tail": 1, "follow": False})
        assert not refused["ok"] and "log requests already" in refused["error"]
        await wait_for(lambda: any(m.get("eof") for m in got), 10, message="stream ends without alive")

        async def served() -> bool:
            return bool((await _ask(t, "n1", {"container": "g1", "tail": 1, "follow": False}))["ok"])

        await wait_for(served, 10, message="served again")
        assert running(t.statuses("n1"), []) is True
