"""Helpers shared by the benchmarks: a throw-away nats-server, drover daemons as subprocesses, API calls."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def compile_bytecode() -> None:
    """Byte-compile drover's own modules, as ``pip install`` does for an installed package. This machine's
    environment sets PYTHONDONTWRITEBYTECODE=1, so an editable checkout would otherwise recompile every module
    it imports from source in every fresh CLI process (≈ 50 ms per command): a cost no installed drover has."""
    import compileall
    import importlib

    for pkg in ("drover", "drover.shared", "drover.agent", "drover.controller"):
        for path in importlib.import_module(pkg).__path__:
            compileall.compile_dir(path, quiet=1)


def nats_binary() -> str:
    from drover.shared.natsbin import find_nats_server

    return find_nats_server() or "nats-server"


class Nats:
    def __init__(self, *, config: str | None = None) -> None:
        """``config``: a nats-server config file read first (e.g. TLS and authorisation)."""
        self.dir = Path(tempfile.mkdtemp(prefix="drover-bench-"))
        self.proc = subprocess.Popen(
            [nats_binary(), *(["-c", config] if config else []), "-a", "127.0.0.1", "-p", "-1",
             "--ports_file_dir", str(self.dir), "-js", "-sd", str(self.dir / "js")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            files = list(self.dir.glob("*.ports"))
            if files:
                try:
                    ports = json.loads(files[0].read_text())
                    self.url = ports["nats"][0]
                    return
                except (ValueError, KeyError):
                    pass
            time.sleep(0.02)
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def daemon(*args: str, cmd: list[str] | None = None) -> subprocess.Popen[bytes]:
    """Start `drover <args>` (its logs to a file in /tmp); ``cmd`` instead of this venv's ``drover``."""
    log = open(f"/tmp/drover-bench-{args[0]}-{os.getpid()}-{time.monotonic_ns()}.log", "wb")
    return subprocess.Popen([*(cmd or [str(VENV_BIN / "drover")]), *args], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop_daemon(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Api:
    def __init__(self, url: str, cluster: str, *, creds: str | None = None, ca: str | None = None):
        self.url, self.cluster = url, cluster
        self.creds, self.ca = creds, ca
        self.timeout = 10.0  # seconds per API request

    async def __aenter__(self) -> Api:
        from drover.shared import bus
        from drover.shared.subjects import Names

        self.nc = await bus.connect(self.url, name="bench", creds=self.creds, ca=self.ca)
        self.names = Names(self.cluster)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.nc.drain()

    async def call(self, verb: str, **body: Any) -> Any:
        from drover.shared import wire
        from drover.shared.models import ApiReply

        deadline = time.monotonic() + self.timeout
        while True:
            msg = await self.nc.request(self.names.api(verb), wire.encode(body), timeout=self.timeout)
            reply = ApiReply.from_wire(msg.data)
            # "unavailable": a controller catching up after a stall of its own (its read barrier), as the CLI
            # does: ask again (the time it takes counts in the call's latency)
            if reply.code != "unavailable" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        if not reply.ok:
            raise RuntimeError(f"{verb}: {reply.error}")
        return reply.data

    async def wait(self, cond: Any, timeout: float, what: str, interval: float = 0.02) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            try:
                if await cond():
                    return time.monotonic() - t0
            except Exception:
                pass
            await asyncio.sleep(interval)
        raise TimeoutError(f"{what} not within {timeout}s")


def service(name: str, replicas: int, command: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "drover/v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"image": "local/busybox:latest", "command": command, "replicas": replicas,
                 "resources": {"cpu": 0.01, "memory": "8Mi"}, "stop_grace": "1s", **spec},
    }


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def remove_labelled(label: str) -> None:
    ids = docker("ps", "-aq", "--filter", f"label={label}").split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], check=False, capture_output=True)


async def engine_idle(label: str, timeout: float = 120) -> None:
    """Wait until the engine holds no container with ``label`` any more: the next trial (drover's or
    Swarm's) must not share the engine with the removal of this one's containers."""
    deadline = time.monotonic() + timeout
    while docker("ps", "-aq", "--filter", f"label={label}").strip():
        if time.monotonic() > deadline:
            raise TimeoutError(f"containers labelled {label} still there after {timeout} s")
        await asyncio.sleep(0.2)
