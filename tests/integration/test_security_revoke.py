"""``drover credentials revoke`` on a real secured nats-server: the revoked credentials' open connection is
dropped and the next connect is refused, other credentials keep working, and a restarted server (config
rewritten) still refuses them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import nats
import pytest

from drover.cli.lab import STATE_FILE
from drover.shared.security import connect_options, load_credentials
from tests.fixtures import SecureNats, wait_for

pytestmark = pytest.mark.nats


def drover(server: SecureNats, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROVER_")}
    env["DROVER_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "drover", *args, "--dir", str(server.sec.path)],
        capture_output=True, text=True, timeout=60, env=env,
    )


async def refused(server: SecureNats, creds: str) -> str:
    with pytest.raises(Exception) as info:  # nats-py raises a plain Error for -ERR
        nc = await nats.connect(server.url, **connect_options(creds, server.ca), allow_reconnect=False,
                                connect_timeout=3)
        await nc.close()
    return repr(info.value).lower()


async def test_revoked_credentials_are_dropped_and_refused(
    secure_nats: SecureNats, cluster_name: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    victim = secure_nats.creds("client", cluster_name)
    keeper = secure_nats.creds("agent", cluster_name, "n1")
    # A running 'drover up' whose nats-server reads this config (lab.json names it): revoke rewrites it.
    conf = secure_nats.workdir / "security.conf"
    (home / STATE_FILE).write_text(json.dumps({
        "pid": os.getpid(), "cluster": cluster_name, "nats": secure_nats.url,
        "processes": [{"name": "nats-1", "kind": "nats", "pid": secure_nats.server.pid, "config": str(conf)}],
    }))
    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    async def quiet(_exc: Exception) -> None:
        return None

    open_conn = await nats.connect(
        secure_nats.url, **connect_options(victim, secure_nats.ca), closed_cb=on_closed, error_cb=quiet,
        max_reconnect_attempts=3, reconnect_time_wait=0.2,
    )
    other = await nats.connect(secure_nats.url, **connect_options(keeper, secure_nats.ca), error_cb=quiet)
    try:
        r = await asyncio.to_thread(
            drover, secure_nats, home, "credentials", "revoke", victim, "--nats", secure_nats.url,
            "--ca", secure_nats.ca,
        )
        assert r.returncode == 0, r.stderr
        user = load_credentials(victim).public_key
        assert f"credentials {user} (client ({cluster_name})) revoked" in r.stdout
        assert "in force on 1 nats-server(s)" in r.stderr and str(conf) in r.stderr
        assert "eof_received" not in r.stderr  # asyncio's TLS close warning is noise, not a line for a user
        # The open connection is dropped by the server, and reconnecting is refused.
        await wait_for(closed.is_set, timeout=15, message="the revoked connection was not closed")
        assert "authorization" in await refused(secure_nats, victim)
        # Other credentials are untouched.
        await other.flush(timeout=5)
        assert other.is_connected

        r = await asyncio.to_thread(drover, secure_nats, home, "credentials", "revocations", "-o", "json")
        assert r.returncode == 0, r.stderr
        assert [row["user"] for row in json.loads(r.stdout)] == [user]

        # Restarted, the server reads the rewritten config: still refused; others (new ones too) accepted.
        await other.close()
        await secure_nats.server.astop()
        await secure_nats.server.astart()
        assert "authorization" in await refused(secure_nats, victim)
        again = await nats.connect(secure_nats.url, **connect_options(keeper, secure_nats.ca), allow_reconnect=False)
        await again.close()
        fresh = await nats.connect(
            secure_nats.url, **connect_options(secure_nats.creds("client", cluster_name), secure_nats.ca),
            allow_reconnect=False,
        )
        await fresh.close()
    finally:
        await open_conn.close()
        await other.close()


def test_revoke_bad_target_is_exit_2(secure_nats: SecureNats, tmp_path: Path) -> None:
    r = drover(secure_nats, tmp_path, "credentials", "revoke", str(tmp_path / "missing.creds"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "neither a credentials file nor a user public key" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_revoke_with_no_server_reachable_records_it_and_exits_1(secure_nats: SecureNats, tmp_path: Path) -> None:
    from tests.fixtures import free_tcp_port

    creds = secure_nats.creds("client", "c1")
    r = drover(secure_nats, tmp_path, "credentials", "revoke", creds, "--nats", f"nats://127.0.0.1:{free_tcp_port()}",
               "--ca", secure_nats.ca)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r
    assert "revocation recorded" in r.stderr and "not sent" in r.stderr
    # Recorded: the next config written (and the next revoke's push) carries it.
    assert load_credentials(creds).public_key in secure_nats.sec.revocations()
    from drover.shared.security_jwt import decode_unverified

    claims = decode_unverified(secure_nats.sec.jwt("account"))
    assert load_credentials(creds).public_key in claims["nats"]["revocations"]
