"""End to end: a Kubernetes Deployment+Service and a Compose file applied with ``drover apply`` run on the real
engine and answer through the proxy; named contexts switch between two clusters; completion offers the
service names of the current context's cluster."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_cli_e2e import Up, _start_up, _stop_up, started_up
from tests.e2e.test_dashboard_e2e import security_args
from tests.fixtures import TEST_IMAGE, free_tcp_port, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.nats]


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with started_up(tmp_path_factory.mktemp("up"), "e", 1) as u:
        yield u


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=3) as r:
        body: bytes = r.read()
        return body


def answers(port: int) -> bool:
    try:
        get(f"http://127.0.0.1:{port}/")
        return True
    except OSError:
        return False


def test_kubernetes_deployment_and_service_run_and_answer(up: Up, tmp_path: Path) -> None:
    port = free_tcp_port()
    f = tmp_path / "k8s.yaml"
    f.write_text(f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: kweb}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: kweb}}}}
  minReadySeconds: 1
  template:
    metadata: {{labels: {{app: kweb}}}}
    spec:
      containers:
        - name: web
          image: {TEST_IMAGE}
          command: [httpd, -f, -p, "8080", -h, /www]
          ports: [{{name: http, containerPort: 8080}}]
          resources: {{requests: {{cpu: 50m, memory: 16Mi}}}}
          readinessProbe: {{httpGet: {{path: /, port: http}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: kweb-svc}}
spec:
  selector: {{app: kweb}}
  ports: [{{port: {port}, targetPort: 8080}}]
""")
    r = up.drover("apply", "-f", str(f))
    assert (r.returncode, r.stdout) == (0, "service/kweb created\n"), r.stderr
    assert up.drover("apply", "-f", str(f)).stdout == "service/kweb unchanged\n"
    r = up.drover("rollout", "status", "kweb", "--timeout", "90s")
    assert r.returncode == 0, r.stdout + r.stderr
    [svc] = up.json("get", "services", "kweb")
    assert (svc["replicas"], svc["ready"]) == (2, 2)
    asyncio.run(wait_for(lambda: answers(port), timeout=30, message="kweb answers through the proxy"))
    assert b"hello" in get(f"http://127.0.0.1:{port}/")
    f.write_text(f.read_text().replace("replicas: 2", "replicas: 1"))
    assert up.drover("apply", "-f", str(f)).stdout == "service/kweb configured\n"
    assert up.drover("delete", "service", "kweb").returncode == 0


def test_compose_file_runs_and_answers(up: Up, tmp_path: Path) -> None:
    port = free_tcp_port()
    f = tmp_path / "compose.yaml"
    f.write_text(f"""\
version: "3.8"
services:
  cweb:
    image: {TEST_IMAGE}
    command: httpd -f -p 8000 -h /www
    environment: [MODE=test]
    ports: ["{port}:8000"]
    deploy: {{replicas: 2, resources: {{limits: {{cpus: "0.05", memory: 16M}}}}}}
    healthcheck: {{test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8000/"], interval: 1s}}
""")
    r = up.drover("apply", "-f", str(f))
    assert (r.returncode, r.stdout) == (0, "service/cweb created\n"), r.stderr
    r = up.drover("rollout", "status", "cweb", "--timeout", "90s")
    assert r.returncode == 0, r.stdout + r.stderr
    asyncio.run(wait_for(lambda: answers(port), timeout=30, message="cweb answers through the proxy"))
    assert b"hello" in get(f"http://127.0.0.1:{port}/")
    # The other commands that read manifests take Compose files as well.
    assert up.drover("diff", "-f", str(f)).returncode == 0
    assert up.drover("apply", "--dry-run", "-f", str(f)).stdout.startswith("service/cweb unchanged (dry run)")

    words = subprocess.run(
        [sys.executable, "-m", "drover"],
        env={**up.env, "_DROVER_COMPLETE": "bash_complete", "COMP_WORDS": "drover scale c", "COMP_CWORD": "2"},
        capture_output=True, text=True, timeout=30,
    )
    assert "plain,cweb" in words.stdout.splitlines(), words.stdout + words.stderr
    assert up.drover("delete", "service", "cweb").returncode == 0


def test_unsupported_field_is_exit_2_and_applies_nothing(up: Up, tmp_path: Path) -> None:
    f = tmp_path / "compose.yaml"
    f.write_text(f"services:\n  nope:\n    image: {TEST_IMAGE}\n    volumes_from: [x]\n")
    r = up.drover("apply", "-f", str(f))
    assert r.returncode == 2
    assert r.stderr.startswith(f"error: {f}[doc 1] services.nope.volumes_from: ")
    assert all(s["name"] != "nope" for s in up.json("get", "services"))


def test_contexts_switch_clusters(up: Up, tmp_path: Path) -> None:
    other = _start_up(tmp_path / "other", f"o{uuid.uuid4().hex[:8]}", "--agents", "0")
    try:
        env = {**os.environ, "DROVER_HOME": str(tmp_path / "client")}
        env.pop("DROVER_NATS", None)
        env.pop("DROVER_CLUSTER", None)

        def drover(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "drover", *args], env=env, capture_output=True, text=True,
                                  timeout=60)

        for name, lab in (("one", up), ("two", other)):
            r = drover("context", "add", name, "--nats", lab.url, "--cluster", lab.cluster, *security_args(lab))
            assert r.returncode == 0, r.stderr
        f = tmp_path / "only-two.yaml"
        f.write_text(f"services:\n  onlytwo:\n    image: {TEST_IMAGE}\n    command: [sleep, '600']\n")
        assert drover("context", "use", "two").returncode == 0
        assert drover("apply", "-f", str(f)).stdout == "service/onlytwo created\n"
        assert "onlytwo" in drover("get", "services").stdout
        assert "onlytwo" not in drover("--context", "one", "get", "services").stdout
        assert drover("context", "use", "one").returncode == 0
        assert "onlytwo" not in drover("get", "services").stdout
        assert "onlytwo" in drover("get", "services", "--context", "two").stdout
        lines = drover("context", "list").stdout.splitlines()
        assert [ln.split()[:2] for ln in lines[1:]] == [["default", "-"], ["*", "one"], ["two", other.url]]
    finally:
        _stop_up(other)
