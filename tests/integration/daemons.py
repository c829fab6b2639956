"""``drover controller`` and ``drover agent`` daemons as child processes for integration tests (logs in the
test's tmp_path), stopped with SIGTERM (then killed) at the end."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def drover_daemons(
    url: str, cluster: str, tmp_path: Path, *commands: list[str]
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """One process per ``commands`` entry (``["controller"]``, ``["agent", "--driver", "sim", …]``)."""
    env = {**os.environ, "DROVER_HOME": str(tmp_path / "home")}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for args in commands:
            with open(tmp_path / f"{args[0]}-{len(procs)}.log", "wb") as log:  # the child keeps its own copy
                procs.append(subprocess.Popen([sys.executable, "-m", "drover", *args, "--nats", url, "--cluster",
                                               cluster, "--log-level", "warning"],
                                              stdout=log, stderr=subprocess.STDOUT, env=env))
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
