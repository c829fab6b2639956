"""End to end through the ``drover`` command: ``drover up`` (real nats-server, controller, two Docker agents)
in a subprocess, then the client commands against it, checking output, JSON keys and exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import TEST_IMAGE, free_tcp_port, require_image
from tests.fixtures.docker import remove_cluster_containers_sync
from tests.fixtures.wait import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.nats]

SERVICE_KEYS = {"name", "image", "revision", "replicas", "running", "ready", "updated", "status"}
CONTAINER_KEYS = {"id", "name", "service", "node", "revision", "state", "ready", "restarts", "host_port"}
NODE_KEYS = {"name", "status", "labels", "address", "capacity", "allocated", "containers", "last_heartbeat"}
EVENT_KEYS = {"time", "kind", "service", "node", "container", "message"}


@dataclass
class Up:
    proc: subprocess.Popen[str]
    env: dict[str, str]
    home: Path
    cluster: str
    url: str
    stdout: list[str]

    def drover(self, *args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "drover", *args],
            env=self.env, input=input, capture_output=True, text=True, timeout=timeout,
        )

    def json(self, *args: str) -> Any:
        r = self.drover(*args, "-o", "json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)


def _start_up(tmp: Path, cluster: str, *extra: str) -> Up:
    home = tmp / "home"
    env = {**os.environ, "DROVER_HOME": str(home)}
    env.pop("DROVER_NATS", None)
    env.pop("DROVER_CLUSTER", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "drover", "up", "--nats-port", "0", "--data-dir", str(tmp / "data"),
         "--cluster", cluster, *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "ready" in line:
            url = next(w for w in line.split() if w.startswith("nats://")).rstrip(",")
            return Up(proc, env, home, cluster, url, lines)
    proc.kill()
    raise AssertionError(f"drover up did not get ready: {lines}")


def _stop_up(up: Up) -> int:
    up.proc.send_signal(signal.SIGTERM)
    try:
        return up.proc.wait(90)
    finally:
        if up.proc.poll() is None:
            up.proc.kill()


@contextlib.contextmanager
def started_up(tmp: Path, prefix: str, agents: int) -> Iterator[Up]:
    """A `drover up` of its own cluster (``<prefix><8 hex>``) for the block; stopped and its containers removed
    after it (the module-scoped ``up`` fixtures of the e2e suites)."""
    require_image(TEST_IMAGE)
    cluster = f"{prefix}{uuid.uuid4().hex[:8]}"
    u = _start_up(tmp, cluster, "--agents", str(agents))
    try:
        yield u
    finally:
        _stop_up(u)
        remove_cluster_containers_sync([cluster])


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with started_up(tmp_path_factory.mktemp("up"), "e", 2) as u:
        yield u


def manifest(name: str, *, replicas: int = 2, expose: int | None = None, command: str = "", extra: str = "") -> str:
    cmd = command or '["httpd", "-f", "-p", "8080", "-h", "/www"]'
    ports = f"[{{name: http, container: 8080, expose: {expose}}}]" if expose else "[{name: http, container: 8080}]"
    return f"""\
apiVersion: drover/v1
kind: Service
metadata: {{name: {name}}}
spec:
  image: {TEST_IMAGE}
  command: {cmd}
  replicas: {replicas}
  ports: {ports}
  resources: {{cpu: 0.05, memory: 16Mi}}
  health:
    http: {{path: /, port: 8080}}
    interval: 1s
  stop_grace: 1s
  update: {{min_ready: 1s, progress_deadline: 20s}}
{extra}"""


def test_up_writes_context_and_registers_agents(up: Up) -> None:
    ctx = json.loads((up.home / "context.json").read_text())
    assert ctx["nats"] == up.url
    assert ctx["cluster"] == up.cluster
    nodes = up.json("get", "nodes")
    assert len(nodes) == 2
    assert all(NODE_KEYS <= set(n) for n in nodes)
    host = socket.gethostname().split(".")[0].lower()
    assert sorted((n["name"], n["address"]) for n in nodes) == [(host, "127.0.0.1"), (f"{host}-2", "127.0.0.2")]
    table = up.drover("get", "nodes")
    assert table.stdout.splitlines()[0].split()[:3] == ["NAME", "STATUS", "ADDRESS"]


def test_up_is_secure_by_default(up: Up, tmp_path: Path) -> None:
    ctx = json.loads((up.home / "context.json").read_text())
    assert Path(ctx["creds"]).is_file() and Path(ctx["ca"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    # Anonymous (no context, no flags): refused by the server, exit 1, one clear line.
    bare = {**up.env, "DROVER_HOME": str(tmp_path / "nohome")}
    r = subprocess.run([sys.executable, "-m", "drover", "--nats", up.url, "get", "nodes"], env=bare,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r
    # Plain TCP: the server sends INFO first and requires TLS.
    host, port = up.url.removeprefix("nats://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        assert b'"tls_required":true' in s.recv(4096)
    # Credentials issued while the cluster runs work at once; read-only ones cannot apply or scale.
    ro = tmp_path / "ro.creds"
    r = up.drover("credentials", "client", "--read-only", "-o", str(ro))
    assert r.returncode == 0, r.stderr
    assert up.drover("--creds", str(ro), "get", "services").returncode == 0
    (tmp_path / "w.yaml").write_text(manifest("ro", replicas=1))
    r = up.drover("--creds", str(ro), "apply", "-f", str(tmp_path / "w.yaml"))
    assert r.returncode == 1 and "permission denied" in r.stderr, r
    agent = tmp_path / "agent.creds"
    assert up.drover("credentials", "agent", "somenode", "-o", str(agent)).returncode == 0
    r = up.drover("--creds", str(agent), "scale", "ro", "2")
    assert r.returncode == 1 and "permission denied" in r.stderr, r


def test_apply_rollout_get_scale_delete(up: Up, tmp_path: Path) -> None:
    port = free_tcp_port()
    f = tmp_path / "web.yaml"
    f.write_text(manifest("web", expose=port))
    r = up.drover("apply", "-f", str(f))
    assert (r.returncode, r.stdout) == (0, "service/web created\n"), r.stderr
    assert up.drover("apply", "-f", str(f)).stdout == "service/web unchanged\n"
    r = up.drover("rollout", "status", "web", "--timeout", "90s")
    assert r.returncode == 0, r.stdout + r.stderr
    [svc] = up.json("get", "services", "web")
    assert SERVICE_KEYS <= set(svc)
    assert (svc["replicas"], svc["ready"], svc["status"]) == (2, 2, "available")
    containers = up.json("get", "containers", "--service", "web")
    assert len(containers) == 2
    assert all(CONTAINER_KEYS <= set(c) for c in containers)
    assert all(c["name"].startswith("drover-web-") and c["host_port"] for c in containers)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
    assert b"hello" in body

    r = up.drover("scale", "web", "1")
    assert (r.returncode, r.stdout) == (0, "service/web scaled to 1\n")
    r = up.drover("describe", "service", "web")
    assert r.returncode == 0 and "Events:" in r.stdout and "Spec:" in r.stdout

    r = up.drover("delete", "-f", str(f))
    assert (r.returncode, r.stdout) == (0, "service/web deleted\n")
    r = up.drover("delete", "service", "web")
    assert r.returncode == 1
    assert r.stderr.strip() == 'error: service "web" not found'
    r = up.drover("get", "services", "web")
    assert r.returncode == 1
    assert r.stderr.strip() == 'error: service "web" not found'


def test_a_manifest_near_the_1mib_limit_applies_and_runs(up: Up, tmp_path: Path) -> None:
    """One service whose spec is almost the whole 1 MiB file (an inline file): its record, revision history
    and assignment are single NATS messages bigger than nats-server's default 1 MiB."""
    content = "x" * (1024 * 1024 - 4096)
    f = tmp_path / "big.yaml"
    f.write_text(manifest("big", replicas=1, extra=f"  files: [{{path: /www/big.txt, content: {content}}}]\n"))
    assert f.stat().st_size <= 1024 * 1024
    r = up.drover("apply", "-f", str(f))
    assert r.returncode == 0, r.stderr
    assert up.drover("rollout", "status", "big", "--timeout", "60s").returncode == 0
    body = up.drover("describe", "service", "big", "-o", "json")
    assert body.returncode == 0 and json.loads(body.stdout)["spec"]["files"][0]["content"] == content
    up.drover("delete", "service", "big")


def test_invalid_manifest_applies_nothing(up: Up, tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(manifest("good-one") + "---\n" + manifest("bad-one").replace("container: 8080", "container: 0"))
    r = up.drover("apply", "-f", str(f))
    assert r.returncode == 2
    assert f"{f}[doc 2] spec.ports[0].container: must be an integer 1-65535" in r.stderr
    assert up.json("get", "services") == [] or all(s["name"] != "good-one" for s in up.json("get", "services"))


def test_failed_rollout_exits_1(up: Up, tmp_path: Path) -> None:
    f = tmp_path / "flaky.yaml"
    f.write_text(manifest("flaky", replicas=1))
    assert up.drover("apply", "-f", str(f)).returncode == 0
    assert up.drover("rollout", "status", "flaky", "--timeout", "90s").returncode == 0
    f.write_text(manifest("flaky", replicas=1, command='["sh", "-c", "exit 3"]'))
    assert up.drover("apply", "-f", str(f)).stdout == "service/flaky configured\n"
    r = up.drover("rollout", "status", "flaky", "--timeout", "120s", timeout=150)
    assert r.returncode == 1, r.stdout
    assert r.stderr.startswith("error: ")
    history = up.drover("rollout", "history", "flaky")
    assert history.stdout.splitlines()[0].split() == ["REVISION", "TIME", "CHANGE", "RESULT"]
    up.drover("delete", "service", "flaky")


def test_events_and_logs(up: Up, tmp_path: Path) -> None:
    f = tmp_path / "ticker.yaml"
    f.write_text(
        manifest("ticker", replicas=1, command='["sh", "-c", "while true; do echo tick; sleep 0.5; done"]')
        .replace("  health:\n    http: {path: /, port: 8080}\n    interval: 1s\n", "")
    )
    assert up.drover("apply", "-f", str(f)).returncode == 0, "apply"
    assert up.drover("rollout", "status", "ticker", "--timeout", "60s").returncode == 0
    events = up.json("events", "--service", "ticker")
    assert events and all(EVENT_KEYS <= set(e) for e in events)
    assert any(e["kind"] == "service-created" for e in events)
    def ticked() -> subprocess.CompletedProcess[str] | None:
        r = up.drover("logs", "ticker", "--tail", "3")
        return r if "tick" in r.stdout else None

    r = wait_until(ticked, 20, 0.5, "no 'tick' in the logs")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines and all(line.startswith("[drover-ticker-") and line.endswith("] tick") for line in lines)
    # -f keeps printing new lines until interrupted, then exits 0 without a traceback
    follow = subprocess.Popen(
        [sys.executable, "-m", "drover", "logs", "ticker", "-f", "--tail", "1"], env=up.env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert follow.stdout is not None
        seen = [follow.stdout.readline() for _ in range(3)]  # the tail, then new lines as they come
        assert all(line.rstrip().endswith("] tick") for line in seen), seen
        follow.send_signal(signal.SIGINT)
        _, err = follow.communicate(timeout=20)
    finally:
        if follow.poll() is None:
            follow.kill()
    assert follow.returncode == 0 and "Traceback" not in err, err
    up.drover("delete", "service", "ticker")


def test_up_refuses_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "drover", "up", "--nats-port", str(port), "--data-dir", str(tmp_path)],
            env={**os.environ, "DROVER_HOME": str(tmp_path / "home")}, capture_output=True, text=True, timeout=30,
        )
    assert r.returncode == 1
    assert f"port {port}" in r.stderr and "in use" in r.stderr


def test_up_stop_removes_containers_and_nats(tmp_path: Path) -> None:
    cluster = f"e{uuid.uuid4().hex[:8]}"
    u = _start_up(tmp_path, cluster)
    try:
        f = tmp_path / "one.yaml"
        f.write_text(manifest("one", replicas=1))
        assert u.drover("apply", "-f", str(f)).returncode == 0
        assert u.drover("rollout", "status", "one", "--timeout", "60s").returncode == 0
        children = subprocess.run(["ps", "--ppid", str(u.proc.pid), "-o", "pid="], capture_output=True, text=True)
        nats_pids = [int(p) for p in children.stdout.split()]
        assert nats_pids
    finally:
        assert _stop_up(u) == 0
    for pid in nats_pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    out = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label=drover.cluster={cluster}", "--format", "{{.Names}}"],
        capture_output=True, text=True,
    )
    assert out.stdout.strip() == ""
