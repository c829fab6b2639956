"""Rolling updates end to end (issue 6), through the `drover` command against `drover up` with two Docker
agents: the body served changes with no failed request, a revision that fails its probe is rolled back
while the old one keeps serving, and `rollout undo` returns to an earlier revision."""

from __future__ import annotations

import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_cli_e2e import Up, up  # noqa: F401  (the module-scoped `drover up` fixture)
from tests.fixtures import TEST_IMAGE, free_tcp_port

pytestmark = [pytest.mark.docker, pytest.mark.nats]


def versioned(
    body: str,
    expose: int,
    *,
    listen: int = 8080,
    name: str = "roll",
    replicas: int = 3,
    update: str = "{max_surge: 1, max_unavailable: 0, min_ready: 1s, progress_deadline: 40s}",
) -> str:
    script = f"mkdir -p /tmp/w && echo {body} > /tmp/w/index.html && exec httpd -f -p {listen} -h /tmp/w"
    return f"""\
apiVersion: drover/v1
kind: Service
metadata: {{name: {name}}}
spec:
  image: {TEST_IMAGE}
  command: ["sh", "-c", "{script}"]
  replicas: {replicas}
  ports: [{{name: http, container: 8080, expose: {expose}}}]
  resources: {{cpu: 0.05, memory: 16Mi}}
  health:
    http: {{path: /, port: 8080}}
    interval: 500ms
    failure_threshold: 2
  stop_grace: 1s
  update: {update}
"""


class Traffic:
    """Requests through the per-node proxy in a thread, a new connection each, until stopped (bounded)."""

    def __init__(self, port: int, limit: int = 20_000):
        self.url = f"http://127.0.0.1:{port}/"
        self.limit = limit
        self.bodies: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for _ in range(self.limit):
            if self._stop.is_set():
                return
            try:
                self.bodies[urllib.request.urlopen(self.url, timeout=5).read().decode().strip()] += 1
            except Exception as exc:
                self.failures.append(repr(exc))

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def bodies_of_replicas(cluster: Up) -> set[str]:
    """What each replica answers on its published port (on its node's address)."""
    address = {n["name"]: n["address"] for n in cluster.json("get", "nodes")}
    rows = cluster.json("get", "containers", "--service", "roll")
    return {
        urllib.request.urlopen(f"http://{address[r['node']]}:{r['host_port']}/", timeout=5).read().decode().strip()
        for r in rows
    }


@pytest.fixture
def roll(up: Up, tmp_path: Path) -> Iterator[tuple[Up, Path, int]]:  # noqa: F811  (pytest fixture injection)
    yield up, tmp_path / "roll.yaml", free_tcp_port()
    up.drover("delete", "service", "roll")


def test_update_rollback_and_undo(roll: tuple[Up, Path, int]) -> None:
    cluster, f, port = roll
    f.write_text(versioned("v1", port))
    assert cluster.drover("apply", "-f", str(f)).returncode == 0
    assert cluster.drover("rollout", "status", "roll", "--timeout", "90s").returncode == 0
    assert bodies_of_replicas(cluster) == {"v1"}

    # 1. v1 -> v2 under traffic: no failed request; afterwards every replica serves v2.
    with Traffic(port) as traffic:
        f.write_text(versioned("v2", port))
        assert cluster.drover("apply", "-f", str(f)).stdout == "service/roll configured\n"
        r = cluster.drover("rollout", "status", "roll", "--timeout", "120s", timeout=150)
        assert r.returncode == 0, r.stdout + r.stderr
    assert traffic.failures == [], traffic.failures[:5]
    assert traffic.bodies["v2"] > 0
    assert bodies_of_replicas(cluster) == {"v2"}
    history = cluster.drover("rollout", "history", "roll").stdout.splitlines()
    assert history[0].split() == ["REVISION", "TIME", "CHANGE", "RESULT"]
    assert [line.split()[0] for line in history[1:]] == ["1", "2"]
    assert all(line.split()[-1] == "complete" for line in history[1:])

    # 2. v3 listens on the wrong port: its probe fails, drover rolls back to v2, v2 serves throughout.
    with Traffic(port) as traffic:
        f.write_text(versioned("v3", port, listen=9090))
        assert cluster.drover("apply", "-f", str(f)).returncode == 0
        r = cluster.drover("rollout", "status", "roll", "--timeout", "120s", timeout=150)
        assert r.returncode == 1, r.stdout
    assert traffic.failures == [], traffic.failures[:5]
    assert set(traffic.bodies) == {"v2"}
    [svc] = cluster.json("get", "services", "roll")
    assert (svc["status"], svc["revision"]) == ("rolled-back", 2)
    assert "rolled-back" in cluster.drover("rollout", "history", "roll").stdout

    # 3. undo to revision 1: its spec is stored as the new revision 4 (1 leaves the history, as in kubectl)
    #    and rolled out.
    r = cluster.drover("rollout", "undo", "roll", "--to-revision", "1")
    assert (r.returncode, r.stdout) == (0, "service/roll rolled back (revision 4)\n"), r.stderr
    assert cluster.drover("rollout", "status", "roll", "--timeout", "120s", timeout=150).returncode == 0
    assert bodies_of_replicas(cluster) == {"v1"}
    assert {c["revision"] for c in cluster.json("get", "containers", "--service", "roll")} == {4}
    history = cluster.json("rollout", "history", "roll")
    assert [(h["revision"], h["result"]) for h in history] == [(2, "complete"), (3, "rolled-back"), (4, "complete")]
    r = cluster.drover("rollout", "undo", "roll", "--to-revision", "1")  # it moved to 4
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no revision 1" in r.stderr, r.stderr

    # 4. undo to 2 (v2 as 5), then a plain undo toggles back to the previous spec (v1, of 4, as 6); then an
    #    apply of v2 moves 5 to 7, as kubectl does. Each is a new revision; the last one rolls out.
    assert cluster.drover("rollout", "undo", "roll", "--to-revision", "2").stdout.endswith("(revision 5)\n")
    assert cluster.drover("rollout", "undo", "roll").stdout.endswith("(revision 6)\n")
    assert cluster.json("get", "services", "roll")[0]["revision"] == 6
    f.write_text(versioned("v2", port))
    assert cluster.drover("apply", "-f", str(f)).stdout == "service/roll configured\n"
    assert cluster.drover("rollout", "status", "roll", "--timeout", "120s", timeout=150).returncode == 0
    assert bodies_of_replicas(cluster) == {"v2"}
    history = cluster.json("rollout", "history", "roll")
    changes = [(h["revision"], h["change"].split(" ")[0]) for h in history]
    assert changes == [(3, "command"), (6, "undo"), (7, "command")]
