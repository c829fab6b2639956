"""The CLI's lean request path (``drover.cli.quickreq``) against a real nats-server, plain and secured (TLS +
JWT): it answers only the happy path, and everything else is ``Unavailable`` so that the full client takes
over (tests/unit/cli keep the full client's error lines and exit codes)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from drover.cli import quickreq
from drover.shared import wire
from drover.shared.models import ApiReply
from drover.shared.security import connect_options, load_credentials
from drover.shared.security_roles import own_inbox
from drover.shared.subjects import Names
from tests.fixtures import NatsServer, SecureNats
from tests.unit.cli.test_fast_cli import HEAVY, PROBE

SERVICE = "apiVersion: drover/v1\nkind: Service\nmetadata: {name: web}\nspec: {image: local/busybox:latest}\n"


async def responder(nc: NATS, subject: str, answer: Callable[[Msg], bytes | None]) -> list[Msg]:
    """Subscribe ``subject``; each request gets ``answer(msg)`` (None: no reply). Returns the requests seen."""
    seen: list[Msg] = []

    async def cb(msg: Msg) -> None:
        seen.append(msg)
        data = answer(msg)
        if data is not None:
            await nc.publish(msg.reply, data)

    await nc.subscribe(subject, cb=cb)
    await nc.flush()
    return seen


def ok_reply(data: Any) -> bytes:
    return ApiReply(ok=True, data=data).to_wire()


async def ask(servers: list[str], subject: str, payload: bytes, **kw: Any) -> bytes:
    return await asyncio.to_thread(quickreq.request, servers, subject, payload, **kw)


@pytest.fixture
async def plain(nats_server: NatsServer) -> AsyncIterator[NATS]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


async def test_plain_request_reply(nats_server: NatsServer, plain: NATS, cluster_name: str) -> None:
    subject = Names(cluster_name).api("apply")
    seen = await responder(plain, subject, lambda m: ok_reply({"echo": wire.decode(m.data)["x"]}))
    data = await ask([nats_server.url], subject, wire.encode({"x": 41}))
    assert wire.decode(data)["data"] == {"echo": 41}
    assert len(seen) == 1 and seen[0].reply.startswith("_INBOX.")


async def test_first_server_down_the_next_one_answers(
    nats_server: NatsServer, plain: NATS, cluster_name: str
) -> None:
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there now
    subject = Names(cluster_name).api("get_services")
    await responder(plain, subject, lambda m: ok_reply([]))
    data = await ask([f"nats://127.0.0.1:{port}", nats_server.url], subject, wire.encode({}))
    assert wire.decode(data)["ok"] is True


async def test_a_big_reply_arrives_whole(nats_server: NatsServer, plain: NATS, cluster_name: str) -> None:
    subject = Names(cluster_name).api("get_containers")
    rows = [{"name": f"web-{i}", "state": "running", "pad": "x" * 100} for i in range(5000)]  # ~0.6 MB
    await responder(plain, subject, lambda m: ok_reply(rows))
    data = await ask([nats_server.url], subject, wire.encode({}))
    assert wire.decode(data)["data"] == rows


async def test_no_responders_is_unavailable_at_once(nats_server: NatsServer, cluster_name: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(quickreq.Unavailable, match="503"):
        await ask([nats_server.url], Names(cluster_name).api("apply"), wire.encode({}))
    assert time.monotonic() - t0 < 1.0  # the server's 503, not the reply wait


async def test_no_reply_within_the_wait_is_unavailable(
    nats_server: NatsServer, plain: NATS, cluster_name: str
) -> None:
    subject = Names(cluster_name).api("apply")
    seen = await responder(plain, subject, lambda m: None)  # a controller that never answers
    t0 = time.monotonic()
    with pytest.raises(quickreq.Unavailable, match="timed out"):
        await ask([nats_server.url], subject, wire.encode({}), wait=0.3)
    assert 0.3 <= time.monotonic() - t0 < 2.0
    assert len(seen) == 1


async def test_over_the_servers_max_payload_is_unavailable_and_nothing_is_sent(
    nats_server: NatsServer, plain: NATS, cluster_name: str
) -> None:
    subject = Names(cluster_name).api("apply")
    seen = await responder(plain, subject, lambda m: ok_reply(None))
    with pytest.raises(quickreq.Unavailable, match="max_payload"):
        await ask([nats_server.url], subject, b"x" * (plain.max_payload + 1))
    await plain.flush()
    assert seen == []


async def test_something_that_is_not_nats_is_unavailable(cluster_name: str) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    port = silent.getsockname()[1]
    try:
        t0 = time.monotonic()
        with pytest.raises(quickreq.Unavailable):  # accepted, never greeted
            await ask([f"nats://127.0.0.1:{port}"], Names(cluster_name).api("apply"), b"")
        assert time.monotonic() - t0 < quickreq.CONNECT_WAIT + 1.0
    finally:
        silent.close()
    for url in ("ws://127.0.0.1:1", "nats://user:secret@127.0.0.1:1"):  # left to nats-py
        with pytest.raises(quickreq.Unavailable, match="not handled"):
            await ask([url], "x", b"")


# --- secured: TLS and JWT credentials, as `drover up` runs its servers ---------------------------------------


@pytest.fixture
async def admin(secure_nats: SecureNats) -> AsyncIterator[NATS]:
    nc = await nats.connect(secure_nats.url, **connect_options(secure_nats.admin, secure_nats.ca))
    yield nc
    await nc.close()


async def test_secured_request_signs_with_the_credentials_and_answers_on_the_users_inbox(
    secure_nats: SecureNats, admin: NATS, cluster_name: str
) -> None:
    creds = secure_nats.creds("client", cluster_name)
    subject = Names(cluster_name).api("apply")
    seen = await responder(admin, subject, lambda m: ok_reply("done"))
    data = await ask([secure_nats.url], subject, wire.encode({}), creds=creds, ca=secure_nats.ca)
    assert wire.decode(data)["data"] == "done"
    assert seen[0].reply.startswith(own_inbox(load_credentials(creds).public_key) + ".")


async def test_secured_refusals_are_unavailable(secure_nats: SecureNats, admin: NATS, cluster_name: str) -> None:
    subject = Names(cluster_name).api("apply")
    await responder(admin, subject, lambda m: ok_reply("done"))
    url, ca = secure_nats.url, secure_nats.ca
    reader = secure_nats.creds("client-read-only", cluster_name)
    with pytest.raises(quickreq.Unavailable, match=r"(?i)permissions violation"):  # a write by a read-only user
        await ask([url], subject, wire.encode({}), creds=reader, ca=ca)
    with pytest.raises(quickreq.Unavailable, match=r"(?i)authorization violation"):  # no credentials
        await ask([url], subject, wire.encode({}), ca=ca)
    with pytest.raises(quickreq.Unavailable, match="TLS without a CA"):  # nats-py's own trust store: left to it
        await ask([url], subject, wire.encode({}), creds=secure_nats.creds("client", cluster_name))
    other = secure_nats.creds("client", "someothercluster")  # valid, but may not publish to this cluster
    with pytest.raises(quickreq.Unavailable, match=r"(?i)permissions violation"):
        await ask([url], subject, wire.encode({}), creds=other, ca=ca)


# --- the command: `drover apply` in a fresh process -------------------------------------------------------------


async def run_cli(tmp_path: Path, url: str, cluster: str, *args: str) -> tuple[int, list[str], str, str]:
    """``drover <args>`` in a fresh interpreter: (exit code, heavy modules it imported, stdout, stderr)."""
    import json

    env = {**os.environ, "DROVER_HOME": str(tmp_path / "home"), "DROVER_NATS": url, "DROVER_CLUSTER": cluster}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PROBE + "\n", json.dumps([*HEAVY, "asyncio"]), *args, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    text, _, loaded = err.decode().rpartition("LOADED ")
    return proc.returncode or 0, json.loads(loaded), out.decode(), text


async def test_apply_answered_without_nats_py_or_asyncio(
    tmp_path: Path, nats_server: NatsServer, plain: NATS, cluster_name: str
) -> None:
    f = tmp_path / "web.yaml"
    f.write_text(SERVICE)
    seen = await responder(plain, Names(cluster_name).api("apply"), lambda m: ok_reply(
        {"results": [{"name": "web", "action": "created"}]}))
    code, mods, out, err = await run_cli(tmp_path, nats_server.url, cluster_name, "apply", "-f", str(f))
    assert (code, out, err.strip()) == (0, "service/web created\n", "")
    assert "nats" not in mods and "asyncio" not in mods, mods
    body = wire.decode(seen[0].data)
    assert body["sources"] == [f"{f}[doc 1]"] and len(body["request_id"]) == 32


async def test_apply_slow_controller_same_request_id_through_the_full_client(
    tmp_path: Path, nats_server: NatsServer, plain: NATS, cluster_name: str
) -> None:
    """The lean path gives up after its first wait; the full client sends the same write again, with the same
    request id (the controllers do it once), and takes the reply."""
    f = tmp_path / "web.yaml"
    f.write_text(SERVICE)
    seen = await responder(plain, Names(cluster_name).api("apply"), lambda m: None if len(seen) == 1 else ok_reply(
        {"results": [{"name": "web", "action": "unchanged"}]}))
    code, mods, out, err = await run_cli(tmp_path, nats_server.url, cluster_name, "apply", "-f", str(f))
    assert (code, out) == (0, "service/web unchanged\n"), err
    assert "nats" in mods  # the full client answered
    ids = {wire.decode(m.data)["request_id"] for m in seen}
    assert len(seen) >= 2 and len(ids) == 1


async def test_apply_without_a_controller_reports_as_before(
    tmp_path: Path, nats_server: NatsServer, cluster_name: str
) -> None:
    f = tmp_path / "web.yaml"
    f.write_text(SERVICE)
    code, _, out, err = await run_cli(tmp_path, nats_server.url, cluster_name, "apply", "-f", str(f))
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [
        f"error: no controller answered on cluster '{cluster_name}' at {nats_server.url} (no responders); "
        "is 'drover controller' (or 'drover up') running for this cluster? set --cluster or DROVER_CLUSTER"
    ]


async def test_secured_apply_answered_without_nats_py(
    tmp_path: Path, secure_nats: SecureNats, admin: NATS, cluster_name: str
) -> None:
    """As against `drover up`: TLS with the cluster CA and a client's JWT credentials, from the environment."""
    f = tmp_path / "web.yaml"
    f.write_text(SERVICE)
    seen = await responder(admin, Names(cluster_name).api("apply"), lambda m: ok_reply(
        {"results": [{"name": "web", "action": "created"}]}))
    creds = secure_nats.creds("client", cluster_name)
    os.environ["DROVER_CREDS"], os.environ["DROVER_CA"] = creds, secure_nats.ca
    try:
        code, mods, out, err = await run_cli(tmp_path, secure_nats.url, cluster_name, "apply", "-f", str(f))
    finally:
        del os.environ["DROVER_CREDS"], os.environ["DROVER_CA"]
    assert (code, out, err.strip()) == (0, "service/web created\n", "")
    assert "nats" not in mods and "asyncio" not in mods and "nkeys" in mods, mods
    assert seen[0].reply.startswith(own_inbox(load_credentials(creds).public_key) + ".")


async def test_secured_get_loads_nats_py_without_aiohttp(
    tmp_path: Path, secure_nats: SecureNats, cluster_name: str
) -> None:
    """A secured command loads the credentials code (security_roles), which must not pull nats-py in before
    drover.cli.natsload does (without aiohttp's websocket transport: ≈ 0.25 s)."""
    os.environ["DROVER_CREDS"], os.environ["DROVER_CA"] = secure_nats.creds("client", cluster_name), secure_nats.ca
    try:
        code, mods, _, err = await run_cli(tmp_path, secure_nats.url, cluster_name, "get", "services")
    finally:
        del os.environ["DROVER_CREDS"], os.environ["DROVER_CA"]
    assert code == 1 and "no controller answered" in err, err
    assert "nats" in mods and "aiohttp" not in mods, mods


async def test_get_pages_through_the_lean_path(
    tmp_path: Path, nats_server: NatsServer, plain: NATS, cluster_name: str
) -> None:
    """`drover get services` asks page after page (500 rows each) on its own socket, loads neither asyncio
    nor nats-py, and prints every row."""
    names = sorted(f"svc{i:04d}" for i in range(1203))

    def page(msg: Msg) -> bytes:
        body = wire.decode(msg.data)
        after = (body.get("after") or [""])[0]
        rows = [{"name": n, "image": "x", "revision": 1, "replicas": 1, "running": 1, "ready": 1, "status": "ok"}
                for n in names if n > after][: body["page"]]
        return ok_reply(rows)

    seen = await responder(plain, Names(cluster_name).api("get_services"), page)
    code, mods, out, err = await run_cli(tmp_path, nats_server.url, cluster_name, "get", "services", "-o", "name")
    assert code == 0, err
    assert out.split() == [f"service/{n}" for n in names]
    assert len(seen) == 3 and "nats" not in mods and "asyncio" not in mods, mods


async def test_describe_through_the_lean_path(
    tmp_path: Path, nats_server: NatsServer, plain: NATS, cluster_name: str
) -> None:
    """`drover describe service` asks on its own socket too (neither asyncio nor nats-py loaded), and a service
    the controller does not know is still "not found" (exit 1)."""

    def describe(msg: Msg) -> bytes:
        name = wire.decode(msg.data)["name"]
        if name != "big":
            return ApiReply(ok=False, code="not-found", error=f'service "{name}" not found').to_wire()
        row = {"name": "big", "image": "x", "revision": 1, "replicas": 1000, "updated": 1000, "running": 998,
               "ready": 998, "status": "progressing"}
        return ok_reply({"service": row, "containers": [], "events": [],
                         "containers_summary": {"total": 1000, "by_state": {"running": 998, "pending": 2},
                                                "nodes": 500}})

    seen = await responder(plain, Names(cluster_name).api("describe_service"), describe)
    code, mods, out, err = await run_cli(tmp_path, nats_server.url, cluster_name, "describe", "service", "big")
    assert code == 0, err
    assert "1000 desired | 1000 updated | 998 running | 998 ready" in out
    assert "1000 in total: 998 running, 2 pending, on 500 nodes" in out
    assert "nats" not in mods and "asyncio" not in mods, mods
    code, _, _, err = await run_cli(tmp_path, nats_server.url, cluster_name, "describe", "service", "nope")
    assert code == 1 and 'service "nope" not found' in err, err
    assert len(seen) == 2
