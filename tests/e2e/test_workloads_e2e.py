"""End to end through the ``drover`` command for the workload features: diff, apply --dry-run,
--if-revision (more in the same module as they land). One ``drover up`` with two Docker agents."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.test_cli_e2e import Up, _start_up, _stop_up
from tests.fixtures import TEST_IMAGE, require_image
from tests.fixtures.docker import remove_cluster_containers_sync

pytestmark = [pytest.mark.docker, pytest.mark.nats]


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    require_image(TEST_IMAGE)
    cluster = f"w{uuid.uuid4().hex[:8]}"
    u = _start_up(tmp_path_factory.mktemp("up"), cluster, "--agents", "2")
    try:
        yield u
    finally:
        _stop_up(u)
        remove_cluster_containers_sync([cluster])


def until(check: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy (no bare sleeps: a deadline and a short poll)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")


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
