"""The CLI starts fast: help and argument errors load neither the bus nor the schema library, and a `get`
loads only the NATS client (without nats-py's optional aiohttp websocket transport)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from drover.cli.main import COMMANDS, _short_help, cli
from tests.fixtures.nats import NatsServer

HEAVY = ("nats", "pydantic", "aiohttp", "aiodocker", "rich", "structlog", "yaml", "drover.shared.models", "nkeys",
         "cryptography")

# Runs the CLI in a fresh interpreter and prints, at exit, which heavy modules were imported.
PROBE = """
import atexit, json, sys
heavy = json.loads(sys.argv[1])
atexit.register(lambda: sys.stderr.write("\\nLOADED " + json.dumps([m for m in heavy if m in sys.modules]) + "\\n"))
from drover.cli.main import main
main(sys.argv[2:])
"""


def loaded(tmp_path: Path, *args: str) -> tuple[int, list[str], str]:
    env = {**os.environ, "DROVER_HOME": str(tmp_path / "home")}
    env.pop("DROVER_NATS", None)
    env.pop("DROVER_CLUSTER", None)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(HEAVY), *args],
        capture_output=True, text=True, env=env, timeout=60,
    )
    marker = proc.stderr.rsplit("LOADED ", 1)
    assert len(marker) == 2, proc.stderr
    return proc.returncode, json.loads(marker[1]), proc.stdout + marker[0]


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["get", "--help"],
        ["rollout", "--help"],
        ["get", "bogus"],
        ["bogus"],
        ["scale", "web", "notanumber"],
        ["agent", "--help"],
    ],
)
def test_help_and_bad_arguments_load_nothing_heavy(tmp_path: Path, args: list[str]) -> None:
    code, mods, out = loaded(tmp_path, *args)
    assert code in (0, 2), out
    assert mods == [], f"`drover {' '.join(args)}` imported {mods}"


def test_get_loads_the_nats_client_only(tmp_path: Path, nats_server: NatsServer) -> None:
    # A real server without a controller: the command connects, asks, and reports that no controller answered.
    code, mods, out = loaded(tmp_path, "--nats", nats_server.url, "get", "services")
    assert code == 1 and "no controller answered" in out, out
    assert mods == ["nats"], f"`drover get services` imported {mods}"


def test_aiohttp_stays_importable_after_the_cli_loaded_nats(tmp_path: Path) -> None:
    code = (
        "from drover.cli import natsload; natsload.load('nats://x'); import nats.aio.transport as t; "
        "assert t.aiohttp is None; import aiohttp; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_the_command_table_matches_the_commands() -> None:
    """`drover --help` lists commands from COMMANDS without loading them: their texts must agree."""
    ctx = click.Context(cli)
    for name, (_module, _attr, text) in COMMANDS.items():
        cmd = cli.get_command(ctx, name)
        assert cmd is not None and cmd.name == name
        for limit in (20, 45, 60, 100, 200):
            assert _short_help(text, limit).strip() == cmd.get_short_help_str(limit), (name, limit)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--count", "3"], "--count and --node-prefix need --driver sim"),
        (["--count", "3", "--driver", "sim", "--node-prefix", "a b"], "'--node-prefix'"),
        (["--count", "0", "--driver", "sim"], "'--count'"),
    ],
)
def test_hollow_fleet_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    code, mods, out = loaded(tmp_path, "agent", "--nats", "nats://127.0.0.1:1", *args)
    assert code == 2 and message in out and len(out.strip().splitlines()) == 1, out
    assert mods == []
