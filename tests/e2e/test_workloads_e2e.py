"""End to end through the ``drover`` command for the workload features: diff, apply --dry-run,
--if-revision (more in the same module as they land). One ``drover up`` with two Docker agents."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli_e2e import Up, _start_up, _stop_up, started_up
from tests.fixtures import TEST_IMAGE
from tests.fixtures.docker import remove_cluster_containers_sync
from tests.fixtures.wait import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.nats]


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with started_up(tmp_path_factory.mktemp("up"), "w", 2) as u:
        yield u


def until(check: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    return wait_until(check, timeout, 0.3, f"{what} not reached")


def svc(name: str, body: str = "", replicas: int = 1) -> str:
    return f"""\
apiVersion: drover/v1
kind: Service
metadata: {{name: {name}}}
spec:
  image: {TEST_IMAGE}
  command: ["sleep", "3600"]
  replicas: {replicas}
  resources: {{cpu: 0.05, memory: 16Mi}}
  stop_grace: 1s
  update: {{min_ready: 0s}}
{body}"""


def test_diff_dry_run_and_if_revision(up: Up) -> None:
    short = svc("plan")
    # Not stored yet: diff shows everything added (exit 1); dry run says created and where; nothing stored.
    r = up.drover("diff", "-f", "-", input=short)
    assert r.returncode == 1, r.stderr
    assert "--- /dev/null" in r.stdout and "+++ service/plan (manifest)" in r.stdout and "+  image:" in r.stdout
    r = up.drover("apply", "--dry-run", "-f", "-", input=short)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "service/plan created (dry run)"
    assert "new replicas would go to:" in r.stdout
    assert up.drover("get", "services", "plan").returncode != 0  # stored nothing
    assert up.drover("apply", "--if-revision", "3", "-f", "-", input=short).returncode == 1
    r = up.drover("apply", "--if-revision", "0", "-f", "-", input=short)
    assert r.returncode == 0 and r.stdout.strip() == "service/plan created", r.stderr

    # Stored: the same manifest, and one that spells out every default, show no difference.
    assert up.drover("diff", "-f", "-", input=short).returncode == 0
    spelt = short.replace("  stop_grace: 1s\n", "  stop_grace: 1s\n  restart: always\n  mode: service\n"
                          "  pull: if-missing\n  network: bridge\n  env: {}\n  volumes: []\n")
    r = up.drover("diff", "-f", "-", input=spelt)
    assert (r.returncode, r.stdout) == (0, ""), r.stdout + r.stderr
    assert up.drover("apply", "--dry-run", "-f", "-", input=spelt).stdout.strip() == "service/plan unchanged (dry run)"

    changed = short.replace('["sleep", "3600"]', '["sleep", "3601"]')
    r = up.drover("diff", "-f", "-", input=changed)
    assert r.returncode == 1
    assert "--- service/plan (stored, revision 1)" in r.stdout
    assert "-  - '3600'" in r.stdout and "+  - '3601'" in r.stdout
    r = up.drover("apply", "--dry-run", "-f", "-", input=changed)
    assert r.stdout.splitlines()[0] == "service/plan configured (dry run)"
    assert up.json("get", "services", "plan")[0]["revision"] == 1  # still

    # --if-revision: a stale revision is refused (exit 1, nothing written); the right one applies.
    r = up.drover("apply", "--if-revision", "2", "-f", "-", input=changed)
    assert r.returncode == 1 and "is at revision 1, not 2" in r.stderr
    assert up.json("get", "services", "plan")[0]["revision"] == 1
    r = up.drover("apply", "--if-revision", "1", "-f", "-", input=changed)
    assert r.returncode == 0 and r.stdout.strip() == "service/plan configured"
    assert up.json("get", "services", "plan")[0]["revision"] == 2

    # Bad input: exit 2 with the problem's place.
    r = up.drover("diff", "-f", "-", input=short.replace("replicas: 1", "replicas: -1"))
    assert r.returncode == 2 and "spec.replicas" in r.stderr
    assert up.drover("delete", "service", "plan").returncode == 0


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)


def containers_of(up: Up, service: str) -> list[dict[str, Any]]:
    return [c for c in up.json("get", "containers", "--service", service) if c["state"] == "running"]


def docker_id(up: Up, service: str, replica: str) -> str:
    r = docker("ps", "-q", "--no-trunc", "--filter", f"label=drover.cluster={up.cluster}",
               "--filter", f"label=drover.id={replica}")
    return r.stdout.strip()


def rolled_out(up: Up, service: str, revision: int, count: int = 1) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        rows = [c for c in containers_of(up, service) if c["revision"] == revision]
        others = [c for c in up.json("get", "containers", "--service", service) if c["revision"] != revision]
        return rows if len(rows) == count and not others else None

    result: list[dict[str, Any]] = until(check, 90, f"{service} at revision {revision}")
    return result


def test_secrets_files_and_volumes(up: Up, tmp_path: Path) -> None:
    secret = "s3cr3t-" + uuid.uuid4().hex[:10]
    volume = f"{up.cluster}-data"
    host_dir = tmp_path / "hostdata"
    host_dir.mkdir()
    r = up.drover("secret", "create", "dbpass", "--from-literal", secret)
    assert (r.returncode, r.stdout.strip()) == (0, "secret/dbpass created"), r.stderr
    listed = up.json("secret", "list")
    assert [(s["name"], s["size"]) for s in listed] == [("dbpass", len(secret))]
    body = f"""\
  volumes:
    - {{host: {host_dir}, container: /host}}
    - {{volume: {volume}, container: /vol}}
  files:
    - {{path: /etc/app/app.conf, content: "listen 8080\\n", mode: "0640"}}
    - {{path: /run/secrets/db, secret: dbpass}}
"""
    manifest = svc("files", body)
    try:
        r = up.drover("apply", "-f", "-", input=manifest)
        assert r.returncode == 0, r.stderr
        (c,) = rolled_out(up, "files", 1)
        cid = docker_id(up, "files", c["id"])
        assert docker("exec", cid, "cat", "/run/secrets/db").stdout == secret  # exact bytes, no newline
        assert docker("exec", cid, "cat", "/etc/app/app.conf").stdout == "listen 8080\n"
        assert docker("exec", cid, "stat", "-c", "%a", "/etc/app/app.conf", "/run/secrets/db").stdout.split() == [
            "640", "400"]
        inspect = json.loads(docker("inspect", cid).stdout)[0]
        assert secret not in json.dumps([inspect["Config"]["Env"], inspect["Config"]["Labels"]])
        mounts = {m["Destination"]: m for m in inspect["Mounts"]}
        assert mounts["/vol"]["Type"] == "volume" and mounts["/vol"]["Name"] == volume
        assert mounts["/host"]["Source"] == str(host_dir)
        # Data written to the volumes survives a restart in place.
        assert docker("exec", cid, "sh", "-c", "echo kept > /vol/x && echo kept > /host/y").returncode == 0
        docker("kill", cid)
        until(lambda: [x for x in containers_of(up, "files") if x["restarts"] >= 1], 60, "restart")
        cid = docker_id(up, "files", c["id"])
        assert docker("exec", cid, "cat", "/vol/x", "/host/y").stdout == "kept\nkept\n"

        # A changed file content is a new revision; the replica stays on its node (sticky) and keeps its data.
        r = up.drover("apply", "-f", "-", input=manifest.replace("listen 8080", "listen 9090"))
        assert r.stdout.strip() == "service/files configured"
        (c2,) = rolled_out(up, "files", 2)
        assert c2["node"] == c["node"]
        cid = docker_id(up, "files", c2["id"])
        assert docker("exec", cid, "cat", "/etc/app/app.conf", "/vol/x").stdout == "listen 9090\nkept\n"

        # A changed secret is a new revision too; the new replica sees the new bytes.
        r = up.drover("secret", "create", "dbpass", "--from-file", str(write(tmp_path / "p", b"line\n")))
        assert r.stdout.strip() == "secret/dbpass configured"
        (c3,) = rolled_out(up, "files", 3)
        assert docker("exec", docker_id(up, "files", c3["id"]), "cat", "/run/secrets/db").stdout == "line\n"

        # The secret never shows in what drover prints.
        for args in (("get", "services", "-o", "json"), ("describe", "service", "files"), ("events",),
                     ("describe", "service", "files", "-o", "json"), ("secret", "list", "-o", "json"),
                     ("logs", "files"), ("rollout", "history", "files")):
            out = up.drover(*args)
            assert secret not in out.stdout + out.stderr, args
        assert up.drover("diff", "-f", "-", input=manifest).stdout.count(secret) == 0
        # In use: cannot be deleted; unknown secrets are refused at apply.
        assert up.drover("secret", "delete", "dbpass").returncode != 0
        r = up.drover("apply", "-f", "-", input=svc("nosecret", "  files:\n    - {path: /s, secret: nope}\n"))
        assert r.returncode == 2 and "no secret 'nope'" in r.stderr
    finally:
        up.drover("delete", "service", "files")
        until(lambda: not up.json("get", "containers", "--service", "files"), 60, "files containers gone")
        docker("volume", "rm", volume)
    assert up.drover("secret", "delete", "dbpass").returncode == 0
    assert up.json("secret", "list") == []


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def job(name: str, command: str, body: str) -> str:
    return svc(name, body).replace('["sleep", "3600"]', json.dumps(["sh", "-c", command]))


def status_of(up: Up, name: str) -> str:
    return str(up.json("get", "services", name)[0]["status"])


def test_job_completes_n_times_and_a_failing_job_stops_after_its_backoff_limit(up: Up) -> None:
    ok = job("jobok", "echo done-$HOSTNAME; sleep 1", "  mode: job\n  job: {completions: 3, parallelism: 2}\n")
    bad = job("jobbad", "echo trying; exit 3", "  mode: job\n  job: {completions: 1, backoff_limit: 1}\n")
    try:
        assert up.drover("apply", "-f", "-", input=ok + "---\n" + bad).returncode == 0
        assert status_of(up, "jobok") == "running"
        until(lambda: status_of(up, "jobok") == "succeeded", 90, "jobok succeeded")
        rows = up.json("get", "containers", "--service", "jobok")
        assert len(rows) == 3 and all(r["state"] == "exited" for r in rows)  # one container per completion, kept
        logs = up.drover("logs", "jobok").stdout
        assert logs.count("done-") == 3, logs

        until(lambda: status_of(up, "jobbad") == "failed", 90, "jobbad failed")
        (row,) = up.json("get", "containers", "--service", "jobbad")
        assert row["restarts"] == 1  # backoff_limit 1: one retry, then no more
        assert "trying" in up.drover("logs", "jobbad").stdout
        kinds = [e["kind"] for e in up.json("events", "--service", "jobbad")]
        assert "job-failed" in kinds
        assert up.json("get", "containers", "--service", "jobbad")[0]["restarts"] == 1
    finally:
        up.drover("delete", "service", "jobok", "jobbad")


def test_every_runs_never_overlap(up: Up) -> None:
    # Each run takes ~3 s and a tick comes every 2 s: every other tick is skipped, never two runs at once.
    cron = job("cron", "sleep 3", '  mode: job\n  schedule: "@every 2s"\n')
    try:
        assert up.drover("apply", "-f", "-", input=cron).returncode == 0
        seen_runs: set[str] = set()

        def runs_and_skips() -> bool:
            running = [c for c in up.json("get", "containers", "--service", "cron") if c["state"] == "running"]
            assert len(running) <= 1, running  # never overlapping
            seen_runs.update(c["id"].split("-")[0] for c in running)
            kinds = [e["kind"] for e in up.json("events", "--service", "cron")]
            return len(seen_runs) >= 2 and "job-tick-skipped" in kinds

        until(runs_and_skips, 90, "two runs and a skipped tick")
        described = up.drover("describe", "service", "cron").stdout
        assert "Runs" in described and "RUN" in described
        runs = up.json("describe", "service", "cron")["runs"]
        assert [r["run"] for r in runs] == sorted(r["run"] for r in runs) and len(runs) >= 2
        assert all(r["result"] == "succeeded" for r in runs[:-1] if r["finished"])
    finally:
        up.drover("delete", "service", "cron")


def test_global_follows_nodes(up: Up) -> None:
    nodes = sorted(n["name"] for n in up.json("get", "nodes"))
    glob = svc("glob", "  mode: global\n")
    try:
        assert up.drover("apply", "-f", "-", input=glob).returncode == 0
        until(lambda: sorted(c["node"] for c in containers_of(up, "glob")) == nodes, 60, "one per node")
        assert up.json("get", "services", "glob")[0]["replicas"] == len(nodes)
        assert up.drover("cordon", nodes[1]).returncode == 0
        until(lambda: sorted(c["node"] for c in up.json("get", "containers", "--service", "glob")) == nodes[:1],
              60, "gone from the cordoned node")
        assert up.drover("uncordon", nodes[1]).returncode == 0
        until(lambda: sorted(c["node"] for c in containers_of(up, "glob")) == nodes, 60, "back on every node")
        # A node that joins gets one too (and loses it when its agent stops).
        ctx = json.loads((up.home / "context.json").read_text())
        auth = [a for k in ("creds", "ca") if ctx.get(k) for a in (f"--{k}", ctx[k])]
        joiner = subprocess.Popen(
            [sys.executable, "-m", "drover", "agent", "--nats", ctx["nats"], "--cluster", up.cluster,
             "--node", "joiner", "--address", "127.0.0.9", *auth],
            env=up.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            until(lambda: "joiner" in {c["node"] for c in containers_of(up, "glob")}, 90, "a replica on the new node")
            assert up.json("get", "services", "glob")[0]["replicas"] == len(nodes) + 1
        finally:
            joiner.terminate()
            joiner.wait(30)
        until(lambda: "joiner" not in {c["node"] for c in up.json("get", "containers", "--service", "glob")},
              90, "replica gone with its node")
    finally:
        up.drover("uncordon", nodes[1])
        up.drover("delete", "service", "glob")


def test_pull_policies_report_failures(up: Up) -> None:
    never = svc("pullnever", "  pull: never\n").replace(TEST_IMAGE, "local/absent-image:1")
    always = svc("pullalways", "  pull: always\n").replace(TEST_IMAGE, "127.0.0.1:1/nowhere:1")  # refused at once
    try:
        assert up.drover("apply", "-f", "-", input=never + "---\n" + always).returncode == 0

        def event(service: str, text: str) -> bool:
            return any(text in e["message"] for e in up.json("events", "--service", service))

        until(lambda: event("pullnever", "is not on this node (pull: never)"), 60, "pull: never event")
        until(lambda: event("pullalways", "could not be pulled"), 60, "pull failure event")
        row = up.json("get", "containers", "--service", "pullalways")[0]
        assert row["state"] != "running"
        assert up.json("get", "services", "pullalways")[0]["status"] != "available"
    finally:
        up.drover("delete", "service", "pullnever", "pullalways")


def test_snapshot_delete_restore_and_another_cluster(up: Up, tmp_path: Path) -> None:
    assert up.drover("secret", "create", "snap-pw", "--from-literal", "pw-123").returncode == 0
    manifest = svc("snapsvc", "  files:\n    - {path: /run/pw, secret: snap-pw}\n")
    # The second agent (127.0.0.2): the other cluster below has only a first one, of the same name as ours, so
    # the restored cordon must not be of that name (a node another test added, sorted first, made it so).
    node = next(n["name"] for n in up.json("get", "nodes") if n["address"] == "127.0.0.2")
    snap = tmp_path / "snap.json"
    try:
        assert up.drover("apply", "-f", "-", input=manifest).returncode == 0
        assert up.drover("apply", "-f", "-", input=manifest.replace('"3600"', '"3599"')).returncode == 0
        assert up.drover("cordon", node).returncode == 0
        r = up.drover("snapshot", "save", str(snap))
        assert r.returncode == 0, r.stderr
        text = snap.read_text()
        assert "pw-123" not in text and json.loads(text)["version"] == 1
        # Delete everything, then restore.
        assert up.drover("delete", "service", "snapshot-missing", "snapsvc").returncode in (0, 1)
        assert up.drover("secret", "delete", "snap-pw").returncode == 0
        assert up.drover("uncordon", node).returncode == 0
        r = up.drover("snapshot", "restore", str(snap))
        assert r.returncode == 0, r.stderr
        assert up.json("get", "services", "snapsvc")[0]["revision"] == 2
        history = up.json("rollout", "history", "snapsvc")
        assert [h["revision"] for h in history] == [1, 2]
        assert [s["name"] for s in up.json("secret", "list")] == ["snap-pw"]
        assert [n["status"] for n in up.json("get", "nodes") if n["name"] == node] == ["cordoned"]
        (c,) = rolled_out(up, "snapsvc", 2)
        assert docker("exec", docker_id(up, "snapsvc", c["id"]), "cat", "/run/pw").stdout == "pw-123"

        # Another cluster (its own key): the secrets need the first cluster's key.
        other = _start_up(tmp_path / "other", f"o{uuid.uuid4().hex[:8]}", "--agents", "1")
        try:
            r = other.drover("snapshot", "restore", str(snap))
            assert r.returncode == 2 and "--key" in r.stderr, r.stderr
            assert other.drover("get", "services", "snapsvc").returncode != 0  # nothing restored
            key = up.home / f"{up.cluster}.secret.key"
            r = other.drover("snapshot", "restore", str(snap), "--key", str(key))
            assert r.returncode == 0, r.stderr
            assert [s["name"] for s in other.json("secret", "list")] == ["snap-pw"]
            (c,) = until(lambda: [x for x in other.json("get", "containers", "--service", "snapsvc")
                                  if x["state"] == "running"], 90, "restored service running elsewhere")
            cid = docker("ps", "-q", "--filter", f"label=drover.cluster={other.cluster}",
                         "--filter", f"label=drover.id={c['id']}").stdout.strip()
            assert docker("exec", cid, "cat", "/run/pw").stdout == "pw-123"
        finally:
            _stop_up(other)
            remove_cluster_containers_sync([other.cluster])
    finally:
        up.drover("uncordon", node)
        up.drover("delete", "service", "snapsvc")
        up.drover("secret", "delete", "snap-pw")


def test_a_finished_job_does_not_run_again_when_drover_up_restarts(tmp_path: Path) -> None:
    """`drover up` removes its containers when it stops; started again on the same home, its agents find the
    job's replicas assigned and no container. A succeeded job stays succeeded and runs nothing again."""
    cluster = f"wj{uuid.uuid4().hex[:8]}"
    u = _start_up(tmp_path, cluster)
    try:
        assert u.drover("apply", "-f", "-", input=job("once", "echo ran-once", "  mode: job\n")).returncode == 0
        until(lambda: status_of(u, "once") == "succeeded", 90, "the job succeeded")
        # recorded by the controller (its replicas are marked finished in the same pass)
        until(lambda: any(e["kind"] == "job-succeeded" for e in u.json("events", "--service", "once")), 30,
              "the job-succeeded event")
    finally:
        assert _stop_up(u) == 0
    u = _start_up(tmp_path, cluster)
    try:
        until(lambda: u.json("get", "nodes") and all(n["status"] == "ready" for n in u.json("get", "nodes")), 60,
              "nodes ready again")
        # The controller sees the replica gone and drops it from the assignment (nothing left to keep).
        until(lambda: u.json("get", "containers", "--service", "once") == [], 60, "the vanished replica dropped")
        assert status_of(u, "once") == "succeeded"
        started = [e for e in u.json("events", "--service", "once") if e["kind"] == "started"]
        assert len(started) == 1, started  # only the first run's
        out = subprocess.run(["docker", "ps", "-a", "--filter", f"label=drover.cluster={cluster}", "--format",
                              "{{.Names}}"], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == ""
    finally:
        _stop_up(u)
        remove_cluster_containers_sync([cluster])
