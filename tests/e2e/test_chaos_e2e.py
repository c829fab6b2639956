"""``drover chaos`` end to end on a ``drover up --nats-servers 3 --agents 3`` lab: a 60 s run with a fixed
seed injects every fault kind and passes; bad flags exit 2; SIGINT undoes every fault."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drover.chaos import iptables
from drover.chaos.schedule import KINDS
from tests.fixtures.docker import TEST_IMAGE, remove_cluster_containers_sync, require_image
from tests.fixtures.wait import wait_until

REPORT_KEYS = {"seed", "duration_s", "faults", "checks", "passed"}
CHECK_KEYS = {
    "desired_state_lost", "duplicate_replicas", "unconverged_services", "max_converge_s", "requests_ok",
    "requests_failed",
}


@dataclass
class Lab:
    proc: subprocess.Popen[str]
    env: dict[str, str]
    home: Path
    cluster: str

    def drover(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "drover", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def state(self) -> dict[str, object]:
        data: dict[str, object] = json.loads((self.home / "lab.json").read_text())
        return data


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_image(TEST_IMAGE)
    tmp = tmp_path_factory.mktemp("chaos")
    cluster = f"c{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DROVER_HOME": str(tmp / "home")}
    env.pop("DROVER_NATS", None)
    env.pop("DROVER_CLUSTER", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "drover", "up", "--nats-port", "0", "--data-dir", str(tmp / "data"), "--cluster",
         cluster, "--nats-servers", "3", "--agents", "3", "--no-metrics"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    ready = ""
    while time.monotonic() < deadline and not ready:
        line = proc.stdout.readline()
        if not line:
            break
        if "ready" in line:
            ready = line
    if not ready:
        proc.kill()
        raise AssertionError("drover up --nats-servers 3 --agents 3 did not get ready")
    assert ready.count("nats://") == 3
    try:
        yield Lab(proc, env, tmp / "home", cluster)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        finally:
            if proc.poll() is None:
                proc.kill()
            remove_cluster_containers_sync([cluster])


def _chaos_rules(pid: int | None = None) -> list[str]:
    """The chaos rules in place: those of chaos process ``pid``, or (None) those left by a process that is gone
    (a chaos run of someone else on this host is no concern of this test)."""
    out = subprocess.run(["iptables", "-w", "5", "-S", iptables.CHAIN], capture_output=True, text=True, check=True)
    rules = [line for line in out.stdout.splitlines() if iptables.TAG_PREFIX in line]
    if pid is not None:
        return [line for line in rules if str(pid) in _tag_pids(line)]
    return [line for line in rules if not any(Path(f"/proc/{p}").exists() for p in _tag_pids(line))]


def _tag_pids(rule: str) -> list[str]:
    return re.findall(rf"{iptables.TAG_PREFIX}(\d+)", rule)


def _state_letter(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.split()[1]
    except OSError:
        return "gone"
    return "?"


def test_the_lab_runs_every_daemon_as_a_child_process(lab: Lab) -> None:
    state = lab.state()
    procs = state["processes"]
    assert isinstance(procs, list)
    kinds = sorted(str(p["kind"]) for p in procs)
    assert kinds == ["agent"] * 3 + ["controller"] + ["nats"] * 3
    for p in procs:
        ppid = Path(f"/proc/{p['pid']}/stat").read_text().rsplit(")", 1)[1].split()[1]
        assert int(ppid) == lab.proc.pid


def test_bad_flags_exit_2(lab: Lab) -> None:
    r = lab.drover("chaos", "--faults", "agent-kill,meteor-strike")
    assert r.returncode == 2
    assert "meteor-strike" in r.stderr and "Traceback" not in r.stderr
    assert lab.drover("chaos", "--duration", "soon").returncode == 2


def test_sigint_undoes_every_fault(lab: Lab, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "drover", "chaos", "--duration", "60s", "--seed", "3", "--faults",
         "pause,partition,gossip-partition", "--interval", "2s"],
        env=lab.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        def partitioned() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"chaos ended early: {proc.communicate()}")
            return bool(_chaos_rules(proc.pid))

        wait_until(partitioned, 120, 0.2, "no partition was ever in place")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, (out, err)
    assert "interrupted" in err and "Traceback" not in err
    assert _chaos_rules(proc.pid) == [] and _chaos_rules() == []
    state = lab.state()
    procs = state["processes"]
    assert isinstance(procs, list)
    assert all(_state_letter(int(p["pid"])) not in ("T", "t") for p in procs)


@pytest.fixture(scope="module")
def run60(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Any]:
    """One 60 s run with every fault kind and a fixed seed, shared by the tests below."""
    report = tmp_path_factory.mktemp("run60") / "report.json"
    r = lab.drover("chaos", "--duration", "60s", "--seed", "11", "--report", str(report), timeout=280)
    return r, json.loads(report.read_text())


def test_a_60s_run_injects_every_fault_and_reports(run60: tuple[subprocess.CompletedProcess[str], Any]) -> None:
    r, data = run60
    assert set(data) == REPORT_KEYS and set(data["checks"]) == CHECK_KEYS
    assert all(set(f) == {"time", "kind", "target"} for f in data["faults"])
    assert {f["kind"] for f in data["faults"]} == set(KINDS), r.stdout
    assert data["seed"] == 11 and data["duration_s"] == 60
    assert all(isinstance(data["checks"][k], list) for k in ("desired_state_lost", "duplicate_replicas"))
    assert "RECOVERED" in r.stdout and "Traceback" not in r.stderr
    assert _chaos_rules() == []
    assert r.returncode == (0 if data["passed"] else 1)


def test_a_60s_run_with_every_fault_passes(run60: tuple[subprocess.CompletedProcess[str], Any]) -> None:
    r, data = run60
    assert data["passed"], r.stdout + r.stderr
