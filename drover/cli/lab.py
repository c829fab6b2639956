"""The processes of ``drover up``: nats-server(s), controller(s) and agents as separate child processes,
each restarted about 1 s after it dies (as systemd's ``Restart=always`` would), and the state file that
tells ``drover chaos`` where they are.

How nats-servers are started is decided in one place, :func:`nats_server_argv`, so that a config-file
based start (TLS, accounts) can replace it without touching the supervision.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1
RESTART_DELAY = 1.0  # systemd's RestartSec=1
STATE_FILE = "lab.json"
NATS_CLUSTER_NAME = "drover"


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class NatsNode:
    """One nats-server of the lab: its client port and, in a cluster, its route port."""

    index: int  # 1-based
    port: int
    cluster_port: int = 0  # 0: a single server, no routes
    monitor_port: int = 0  # its HTTP monitoring (/healthz) on 127.0.0.1; 0: none

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


def nats_nodes(count: int, first_port: int) -> list[NatsNode]:
    """Ports of ``count`` servers: the first on ``first_port`` (0: a free one), the others on free ports. A
    cluster's servers also serve /healthz, so that ``drover chaos`` kills one only while the others are
    current (a second kill before the first server has caught up would take JetStream's quorum)."""
    if count <= 1:
        return [NatsNode(1, first_port or free_port())]
    ports = [first_port or free_port()] + [free_port() for _ in range(count - 1)]
    return [NatsNode(i + 1, p, free_port(), free_port()) for i, p in enumerate(ports)]


def nats_server_argv(
    binary: str, data_dir: Path, node: NatsNode, peers: list[NatsNode], config: Path | None = None
) -> list[str]:
    """The command line of one nats-server of the lab: ``config`` (TLS and authorisation, from
    ``shared.security``), 127.0.0.1, JetStream under ``data_dir``, and for a cluster the routes to every peer
    (a JetStream cluster needs a server name and a cluster name)."""
    head = [binary, *(["-c", str(config)] if config else [])]
    if node.cluster_port == 0:
        return [*head, "-a", "127.0.0.1", "-js", "-sd", str(data_dir / "nats"), "-p", str(node.port)]
    routes = ",".join(f"nats://127.0.0.1:{p.cluster_port}" for p in peers if p.index != node.index)
    return [
        *head, "-a", "127.0.0.1", "-p", str(node.port), "-js", "-sd", str(data_dir / f"nats-{node.index}"),
        "-n", f"nats-{node.index}", "--cluster_name", NATS_CLUSTER_NAME,
        "--cluster", f"nats://127.0.0.1:{node.cluster_port}", "--routes", routes,
        *(["-m", str(node.monitor_port)] if node.monitor_port else []),
    ]


@dataclass
class Child:
    """One supervised child process: started with its own session (the terminal's Ctrl-C reaches only
    ``drover up``, which stops the children in order) and tied to our life by PR_SET_PDEATHSIG."""

    name: str
    kind: str  # nats | controller | agent
    argv: list[str]
    log_path: Path
    info: dict[str, Any] = field(default_factory=dict)  # what chaos needs: node, address, ports…
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    died_at: float | None = None
    stopping: bool = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # handed to the child
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        finally:
            log.close()
        self.died_at = None

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip()[:300] for line in text[-lines:])

    def due_restart(self, now: float) -> bool:
        """Level-triggered restart decision: dead and not stopping → restart ``RESTART_DELAY`` after the
        death was first seen."""
        if self.stopping or self.proc is None or self.alive():
            return False
        if self.died_at is None:
            self.died_at = now
        return now - self.died_at >= RESTART_DELAY

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def stop_wait(self, grace: float) -> None:
        """SIGTERM (and SIGCONT, in case chaos left it stopped), wait ``grace``, then SIGKILL."""
        self.stopping = True
        if not self.alive():
            return
        assert self.proc is not None
        self.signal(signal.SIGTERM)
        self.signal(signal.SIGCONT)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        self.stopping = True
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            with contextlib.suppress(Exception):
                self.proc.wait(5)


def drover_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "drover", *args]


def write_state(path: Path, *, cluster: str, nats: str, driver: str, children: list[Child]) -> None:
    """``lab.json``: ``drover up``'s pid, the cluster, its NATS URLs and every child (name, kind, pid,
    restarts and ``info``), rewritten atomically after every (re)start."""
    state = {
        "pid": os.getpid(),
        "cluster": cluster,
        "nats": nats,
        "driver": driver,
        "updated": time.time(),
        "processes": [
            {"name": c.name, "kind": c.kind, "pid": c.pid, "restarts": c.restarts, **c.info} for c in children
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_state(path: Path) -> dict[str, Any] | None:
    """The lab state written by a running ``drover up`` (None when absent, unreadable or stale)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
        return None
    try:
        os.kill(data["pid"], 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return data


__all__ = [
    "Child", "NatsNode", "drover_argv", "free_port", "nats_nodes", "nats_server_argv", "read_state", "write_state",
]
