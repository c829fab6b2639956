"""``drover credentials revoke`` against ``drover up --nats-servers 3``: every server of the NATS cluster takes
the revocation, the revoked client is refused while other credentials work, and a nats-server that dies and is
restarted by ``drover up`` (reading the config revoke rewrote) still refuses it."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_cli_e2e import Up, _start_up, _stop_up
from tests.fixtures.wait import wait_until

pytestmark = [pytest.mark.nats]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    tmp = tmp_path_factory.mktemp("revoke")
    u = _start_up(tmp, f"rv{uuid.uuid4().hex[:8]}", "--nats-servers", "3", "--agents", "1", "--driver", "sim")
    try:
        yield u
    finally:
        _stop_up(u)


def nats_children(up: Up) -> list[dict[str, object]]:
    state = json.loads((up.home / "lab.json").read_text())
    return [p for p in state["processes"] if p["kind"] == "nats"]


def test_revoked_client_is_refused_by_every_server_and_after_a_restart(lab: Up, tmp_path: Path) -> None:
    creds = tmp_path / "alice.creds"
    r = lab.drover("credentials", "client", "-o", str(creds))
    assert r.returncode == 0, r.stderr
    assert lab.drover("--creds", str(creds), "get", "nodes").returncode == 0

    r = lab.drover("credentials", "revoke", str(creds))
    assert r.returncode == 0, r.stderr
    assert "in force on 3 nats-server(s)" in r.stderr
    assert r.stderr.count("rewritten") == 1  # the servers share one config file

    for child in nats_children(lab):
        url = str(child["url"])
        # A refused credential is answered at once (nats-py alone loops over the cluster's advertised servers
        # for ever: shared/firstconnect.py); the short timeout makes a return of that loop fail here.
        refused = lab.drover("--nats", url, "--creds", str(creds), "get", "nodes", timeout=20)
        assert refused.returncode == 1 and "authorization violation" in refused.stderr, (url, refused)
    assert lab.drover("get", "nodes").returncode == 0  # the context's admin credentials still work

    # A nats-server killed and restarted by 'drover up' reads the rewritten config.
    victim = nats_children(lab)[0]
    os.kill(int(str(victim["pid"])), signal.SIGKILL)
    wait_until(lambda: nats_children(lab)[0]["pid"] != victim["pid"], timeout=30, interval=0.2,
               message="nats-1 restarted")
    url = str(victim["url"])

    def admin_served() -> bool:
        return lab.drover("--nats", url, "get", "nodes").returncode == 0

    wait_until(admin_served, timeout=60, interval=1.0, message="restarted nats-1 serves admin again")
    refused = lab.drover("--nats", url, "--creds", str(creds), "get", "nodes")
    assert refused.returncode == 1 and "authorization violation" in refused.stderr, refused
    r = lab.drover("credentials", "revocations", "-o", "json")
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 1, r
