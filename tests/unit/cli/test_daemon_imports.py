"""What a daemon's entry imports before it starts: ``drover agent`` and ``drover controller`` are restarted by
``drover up`` after a crash, and an agent must heartbeat again within the node grace, imports included. Their
modules, loaded the way the commands load them (``natsload.load_daemon`` first), must not pull in aiohttp
(nats-py's websocket transport, aiodocker), rich (structlog's pretty printing) or PyYAML (manifest text)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ["aiohttp", "aiodocker", "rich", "yaml"]

PROBE = """
import json, sys
from drover.cli import natsload
natsload.load_daemon("nats://127.0.0.1:4222")
import {module}
print(json.dumps([m for m in json.loads(sys.argv[1]) if m in sys.modules]))
"""


@pytest.mark.parametrize("module", ["drover.agent.main", "drover.controller.main"])
def test_a_daemons_modules_load_nothing_heavy(module: str) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module), json.dumps(HEAVY)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [], f"{module} imported these before its start"


def test_a_websocket_url_keeps_nats_websocket_transport() -> None:
    code = ("from drover.cli import natsload; natsload.load_daemon('nats://a:4222,ws://b:8080'); "
            "import nats.aio.transport as t; print(t.aiohttp is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr
