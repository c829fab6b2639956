"""Client commands through click's runner: exit codes, error lines, output, with a fake controller."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from nats.errors import NoRespondersError

from drover.cli import client as client_mod
from drover.cli import quickreq
from drover.cli.main import cli
from drover.controller import views
from drover.shared import wire
from drover.shared.models import ApiReply
from tests.unit.cli.fakebus import InboxFromRequest

GOOD = """\
apiVersion: drover/v1
kind: Service
metadata: {name: web}
spec:
  image: local/busybox:latest
  replicas: 2
  ports: [{name: http, container: 8080}]
---
apiVersion: drover/v1
kind: Service
metadata: {name: worker}
spec:
  image: local/busybox:latest
"""

BAD = """\
apiVersion: drover/v1
kind: Service
metadata: {name: web}
spec:
  image: local/busybox:latest
  ports: [{name: http, container: 70000}]
"""


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DROVER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DROVER_NATS", raising=False)
    monkeypatch.delenv("DROVER_CLUSTER", raising=False)


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


class Listener:
    """A TCP port that counts connections (to prove that nothing was sent)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()


# --- fake controller --------------------------------------------------------------------------------------------


class FakeMsg:
    def __init__(self, data: bytes):
        self.data = data


class FakeNats(InboxFromRequest):
    max_payload = 1024 * 1024  # nats-server's default, as the server would announce it

    def __init__(self, handlers: dict[str, Callable[[dict[str, Any]], Any]]):
        self.handlers = handlers
        self.requests: list[tuple[str, dict[str, Any]]] = []

    async def request(self, subject: str, data: bytes, timeout: float = 1.0) -> FakeMsg:
        body = wire.decode(data)
        self.requests.append((subject, body))
        verb = subject.rsplit(".", 1)[-1]
        handler = self.handlers.get(verb)
        if handler is None:
            raise NoRespondersError
        reply = handler(body)
        if not isinstance(reply, ApiReply):
            reply = ApiReply(ok=True, data=reply)
        return FakeMsg(reply.to_wire())

    async def close(self) -> None:
        return None


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeNats]:
    def install(**handlers: Callable[[dict[str, Any]], Any]) -> FakeNats:
        nc = FakeNats(handlers)

        async def connect(*_: Any, **__: Any) -> FakeNats:
            return nc

        monkeypatch.setattr(client_mod, "connect", connect)
        # a verb the fake does not answer is "no responders": give up on it soon (a real CLI waits for a
        # restarting controller, client.NO_RESPONDERS_PATIENCE)
        monkeypatch.setattr(client_mod.Client, "no_responders_patience", 0.3)
        # The fake sits behind the full client: the lean path (quickreq) must not reach a real server on the
        # default URL instead.
        monkeypatch.setattr(quickreq, "ENABLED", False)
        return nc

    return install


SERVICE_ROW = {"name": "web", "image": "local/busybox:latest", "revision": 2, "replicas": 3, "running": 3,
               "ready": 3, "updated": 3, "status": "available"}


# --- bad input: exit 2, nothing sent ----------------------------------------------------------------------------


def test_invalid_manifest_exit_2_exact_line_from_a_server_that_is_not_nats(tmp_path: Path, listener: Listener) -> None:
    # (apply asks the controller to check documents that read and convert cleanly, and checks them locally
    # when it refuses them or cannot be reached: see test_apply_fast.py)
    f = tmp_path / "web.yaml"
    f.write_text(BAD)
    result = run("apply", "-f", str(f), "--nats", f"nats://127.0.0.1:{listener.port}")
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        f"error: {f}[doc 1] spec.ports[0].container: must be an integer 1-65535"
    ]
    assert result.stdout == ""


def test_unreadable_yaml_is_exit_2_without_nats_traffic(tmp_path: Path, listener: Listener) -> None:
    f = tmp_path / "web.yaml"
    f.write_text("apiVersion: drover/v1\nkind: [Service\n")
    result = run("apply", "-f", str(f), "--nats", f"nats://127.0.0.1:{listener.port}")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {f}")
    assert listener.connections == 0


def test_invalid_manifest_fails_before_connecting_to_a_closed_port(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    Path("web.yaml").write_text(GOOD + "---\n" + BAD)
    result = run("apply", "-f", "web.yaml", "--nats", f"nats://127.0.0.1:{closed_port()}")
    assert result.exit_code == 2
    assert "error: web.yaml[doc 3] spec.ports[0].container: must be an integer 1-65535" in result.stderr.splitlines()
    assert "cannot reach" not in result.stderr


def test_invalid_manifest_on_stdin() -> None:
    result = run("apply", "-f", "-", "--nats", f"nats://127.0.0.1:{closed_port()}", input=BAD)
    assert result.exit_code == 2
    assert "[doc 1] spec.ports[0].container: must be an integer 1-65535" in result.stderr


def test_missing_file_is_bad_input() -> None:
    result = run("apply", "-f", "/no/such/file.yaml", "--nats", f"nats://127.0.0.1:{closed_port()}")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: /no/such/file.yaml")


@pytest.mark.parametrize("n", ["x", "1.5", "-1", "two"])
def test_scale_non_integer_is_exit_2(n: str, listener: Listener) -> None:
    result = run("scale", "web", "--nats", f"nats://127.0.0.1:{listener.port}", "--", n)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert listener.connections == 0


def test_unknown_resource_and_bad_timeout_are_usage_errors() -> None:
    assert run("get", "widgets").exit_code == 2
    assert run("rollout", "status", "web", "--timeout", "soon").exit_code == 2
    assert run("describe", "containers", "x").exit_code == 2


# --- unreachable / no controller ------------------------------------------------------------------------------------


def test_unreachable_cluster_exit_1() -> None:
    port = closed_port()
    result = run("get", "services", "--nats", f"nats://127.0.0.1:{port}")
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert line.startswith(f"error: cannot reach the drover cluster at nats://127.0.0.1:{port}: ")
    assert "is 'drover up' running? set --nats or DROVER_NATS" in line
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_uses_env_and_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    home = tmp_path / "home"
    home.mkdir()
    (home / "context.json").write_text(json.dumps({"nats": f"nats://127.0.0.1:{port}"}))
    result = run("get", "nodes")
    assert result.exit_code == 1
    assert f"nats://127.0.0.1:{port}" in result.stderr
    port2 = closed_port()
    monkeypatch.setenv("DROVER_NATS", f"nats://127.0.0.1:{port2}")
    result = run("get", "nodes")
    assert f"nats://127.0.0.1:{port2}" in result.stderr


def test_no_controller_answering(fake: Callable[..., FakeNats]) -> None:
    fake()
    result = run("get", "services")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no controller answered on cluster 'default'")


# --- with a fake controller ------------------------------------------------------------------------------------


def test_apply_sends_manifests_and_prints_results(tmp_path: Path, fake: Callable[..., FakeNats]) -> None:
    def apply(body: dict[str, Any]) -> Any:
        return {"results": [{"kind": "service", "name": m["metadata"]["name"], "action": a, "revision": 1}
                            for m, a in zip(body["manifests"], ["created", "unchanged"], strict=True)]}

    nc = fake(apply=apply)
    f = tmp_path / "both.yaml"
    f.write_text(GOOD)
    result = run("apply", "-f", str(f))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["service/web created", "service/worker unchanged"]
    subject, body = nc.requests[0]
    assert subject == "drover.default.api.apply"
    assert body["sources"] == [f"{f}[doc 1]", f"{f}[doc 2]"]
    assert body["manifests"][0]["spec"]["ports"][0]["container"] == 8080


def test_apply_directory(tmp_path: Path, fake: Callable[..., FakeNats]) -> None:
    nc = fake(apply=lambda b: {"results": [{"name": m["metadata"]["name"], "action": "created"}
                                           for m in b["manifests"]]})
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "notes.txt").write_text("ignored")
    result = run("apply", "-f", str(tmp_path), "--cluster", "lab")
    assert result.exit_code == 0, result.output
    assert nc.requests[0][0] == "drover.lab.api.apply"
    assert len(nc.requests[0][1]["manifests"]) == 2


def test_controller_invalid_is_exit_2(tmp_path: Path, fake: Callable[..., FakeNats]) -> None:
    fake(apply=lambda b: ApiReply(ok=False, code="invalid", error="invalid manifest",
                                  problems=[{"where": "x[doc 1] spec.image", "message": "required"}]))
    f = tmp_path / "w.yaml"
    f.write_text(GOOD)
    result = run("apply", "-f", str(f))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["error: x[doc 1] spec.image: required"]


def test_get_services_table_and_json(fake: Callable[..., FakeNats]) -> None:
    fake(get_services=lambda b: [SERVICE_ROW])
    result = run("get", "services")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "IMAGE", "REVISION", "READY", "STATUS"]
    assert lines[1].split() == ["web", "local/busybox:latest", "2", "3/3", "available"]
    result = run("get", "svc", "-o", "json")
    assert json.loads(result.stdout) == [SERVICE_ROW]
    result = run("get", "service", "-o", "yaml")
    assert yaml.safe_load(result.stdout) == [SERVICE_ROW]


def test_get_named_not_found_exit_1(fake: Callable[..., FakeNats]) -> None:
    fake(get_services=lambda b: ApiReply(ok=False, code="not-found", error=f'service "{b["name"]}" not found'))
    result = run("get", "services", "nope")
    assert result.exit_code == 1
    assert result.stderr.strip() == 'error: service "nope" not found'


def test_get_named_empty_list_is_not_found(fake: Callable[..., FakeNats]) -> None:
    fake(get_nodes=lambda b: [])
    result = run("get", "node", "n9")
    assert result.exit_code == 1
    assert result.stderr.strip() == 'error: node "n9" not found'


def test_get_containers_passes_service(fake: Callable[..., FakeNats]) -> None:
    nc = fake(get_containers=lambda b: [])
    assert run("get", "containers", "--service", "web").exit_code == 0
    assert nc.requests[0][1] == {"name": None, "service": "web", "page": 500}


def test_delete(fake: Callable[..., FakeNats]) -> None:
    def delete(body: dict[str, Any]) -> Any:
        return {"results": [{"name": n, "action": "deleted" if n == "web" else "not-found"} for n in body["names"]]}

    fake(delete=delete)
    result = run("delete", "service", "web")
    assert (result.exit_code, result.stdout) == (0, "service/web deleted\n")
    result = run("delete", "service", "web", "x")
    assert result.exit_code == 1
    assert result.stdout == "service/web deleted\n"
    assert result.stderr.strip() == 'error: service "x" not found'


def test_delete_all_missing(fake: Callable[..., FakeNats]) -> None:
    fake(delete=lambda b: ApiReply(ok=False, code="not-found", error='service "x" not found'))
    result = run("delete", "service", "x")
    assert result.exit_code == 1
    assert result.stderr.strip() == 'error: service "x" not found'


def test_scale_and_node_verbs(fake: Callable[..., FakeNats]) -> None:
    nc = fake(scale=lambda b: {"name": b["name"], "replicas": b["replicas"]},
              cordon=lambda b: {"node": b["node"], "status": "cordoned"},
              uncordon=lambda b: {"node": b["node"], "status": "ready"},
              drain=lambda b: {"node": b["node"], "status": "draining"})
    assert run("scale", "web", "0").stdout == "service/web scaled to 0\n"
    assert nc.requests[-1][1] == {"name": "web", "replicas": 0, "request_id": nc.requests[-1][1]["request_id"]}
    assert run("cordon", "n1").stdout == "node/n1 cordoned\n"
    assert run("uncordon", "n1").stdout == "node/n1 uncordoned\n"
    assert run("drain", "n1").stdout == "node/n1 drained\n"


def test_unsupported_verbs(fake: Callable[..., FakeNats]) -> None:
    fake(get_nodes=lambda b: [],
         leader=lambda b: ApiReply(ok=False, code="unsupported", error="'leader' is not supported"))
    result = run("leader")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: leader is not supported by this controller yet"
    result = run("endpoints", "web")  # no responder for the verb while the controller answers others
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: endpoints is not supported by this controller yet"


def test_rollout_status_outcomes(fake: Callable[..., FakeNats]) -> None:
    rows = iter([{**SERVICE_ROW, "status": "progressing", "updated": 1, "ready": 2}, SERVICE_ROW])
    fake(rollout_status=lambda b: next(rows))
    result = run("rollout", "status", "web", "--timeout", "10s")
    assert result.exit_code == 0, result.output
    assert "successfully rolled out" in result.stdout
    # Every replica ready but the controller has not judged the revision complete (min_ready): keep waiting.
    rows = iter([{**SERVICE_ROW, "rollout": "progressing"}, {**SERVICE_ROW, "rollout": "complete"}])
    seen: list[str] = []
    fake(rollout_status=lambda b: seen.append("asked") or next(rows))
    result = run("rollout", "status", "web", "--timeout", "10s")
    assert result.exit_code == 0, result.output
    assert len(seen) == 2 and "successfully rolled out" in result.stdout
    fake(rollout_status=lambda b: {**SERVICE_ROW, "rollout": "progressing"})
    result = run("rollout", "status", "web", "--timeout", "1s")
    assert result.exit_code == 1 and "timed out" in result.stderr
    fake(rollout_status=lambda b: {**SERVICE_ROW, "status": "rolled-back", "reason": "probe failed"})
    result = run("rollout", "status", "web")
    assert result.exit_code == 1
    assert "rolled back" in result.stderr
    fake(get_services=lambda b: [{**SERVICE_ROW, "status": "progressing", "updated": 1}])  # no rollout_status
    result = run("rollout", "status", "web", "--timeout", "1s")
    assert result.exit_code == 1
    assert "timed out" in result.stderr


def test_events_table(fake: Callable[..., FakeNats]) -> None:
    ev = {"time": "2024-05-01T12:00:03.000Z", "kind": "started", "service": "web", "node": "n1",
          "container": "abc", "message": "container started"}
    fake(events=lambda b: [ev])
    result = run("events")
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["TIME", "KIND", "SERVICE", "NODE", "CONTAINER", "MESSAGE"]
    assert lines[1].split()[1:] == ["started", "web", "n1", "abc", "container", "started"]
    assert json.loads(run("events", "-o", "json").stdout) == [ev]


# --- paging: `get` asks for big listings in pages and returns every row unless --limit ------------------------

ROWS = [
    {"id": f"r{i:05d}", "name": f"drover-s{i % 7}-r{i:05d}", "service": f"s{i % 7}", "node": f"n{i % 13}",
     "revision": 1, "state": "running", "ready": True, "restarts": 0, "host_port": None}
    for i in range(1234)
]
ROWS.sort(key=lambda r: views.page_key("containers", r))


def paging_controller(body: dict[str, Any]) -> Any:
    return views.page("containers", ROWS, body.get("after"), body.get("page"))


def test_every_row_comes_in_pages(fake: Callable[..., FakeNats]) -> None:
    nc = fake(get_containers=paging_controller)
    result = run("get", "containers", "-o", "json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert [r["id"] for r in got] == [r["id"] for r in ROWS]
    assert len(nc.requests) == 3 and all(b["page"] == 500 for _, b in nc.requests)


def test_limit_stops_early(fake: Callable[..., FakeNats]) -> None:
    nc = fake(get_containers=paging_controller)
    result = run("get", "containers", "--limit", "7", "-o", "json")
    assert [r["id"] for r in json.loads(result.stdout)] == [r["id"] for r in ROWS[:7]]
    assert len(nc.requests) == 1 and nc.requests[0][1]["page"] == 7


def test_a_controller_that_does_not_page(fake: Callable[..., FakeNats]) -> None:
    nc = fake(get_containers=lambda body: ROWS)
    result = run("get", "containers", "-o", "json")
    assert len(json.loads(result.stdout)) == len(ROWS) and len(nc.requests) == 1
    exactly = ROWS[:500]
    nc = fake(get_containers=lambda body: exactly)
    result = run("get", "containers", "-o", "json")
    assert len(json.loads(result.stdout)) == 500 and len(nc.requests) == 2


def test_events_come_in_pages(fake: Callable[..., FakeNats]) -> None:
    evs = [{"time": "2024-05-01T12:00:03.000Z", "kind": "started", "service": "web", "node": "n1",
            "container": f"c{i}", "message": "m"} for i in range(2500)]

    def events(body: dict[str, Any]) -> Any:
        chosen = evs[-body["limit"]:] if body["limit"] else evs
        return chosen[body["offset"]:body["offset"] + body["page"]]

    nc = fake(events=events)
    got = json.loads(run("events", "--limit", "0", "-o", "json").stdout)
    assert [e["container"] for e in got] == [e["container"] for e in evs] and len(nc.requests) == 3


def test_rollout_undo_of_a_paused_service_says_it_waits_for_resume(fake: Callable[..., FakeNats]) -> None:
    fake(rollout_undo=lambda b: {"name": "web", "revision": 3, "paused": True})
    result = run("rollout", "undo", "web")
    assert result.exit_code == 0, result.output
    assert result.stdout == "service/web rolled back (revision 3)\n"
    assert "paused" in result.stderr and "drover rollout resume web" in result.stderr
    fake(rollout_undo=lambda b: {"name": "web", "revision": 4, "paused": False})
    result = run("rollout", "undo", "web")
    assert result.exit_code == 0 and result.stderr == ""
