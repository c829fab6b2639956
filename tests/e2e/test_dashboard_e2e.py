"""The web dashboard in a real headless browser (Debian's chromium driven by playwright over DevTools).

A cluster from ``drover up`` plus a second ``drover controller --ui-port`` (any controller serves the
dashboard): the first page holds services as R/D with status, revision and rollout, nodes, containers and
events with their full message; a ``drover scale`` from the CLI shows on the open page without a reload;
nothing is loaded from outside; a screenshot is saved as a test artefact and is not blank.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli_e2e import Up, _start_up, _stop_up, manifest
from tests.fixtures import TEST_IMAGE, free_tcp_port, require_image, wait_for
from tests.fixtures.docker import remove_cluster_containers_sync

pytestmark = [pytest.mark.docker, pytest.mark.nats]

CHROMIUM = os.environ.get("DROVER_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("DROVER_TEST_ARTIFACTS") or Path(__file__).resolve().parents[2] / "test-artifacts")


def security_args(up: Up) -> list[str]:
    """``--creds F --ca F`` when the cluster ``drover up`` started wants them (as its context says)."""
    ctx = json.loads((up.home / "context.json").read_text())
    return [arg for key in ("creds", "ca") if ctx.get(key) for arg in (f"--{key}", ctx[key])]


def browser_binary() -> str:
    found = shutil.which(CHROMIUM)
    if not found:  # fail, never skip: scripts/setup.sh installs it
        pytest.fail(f"{CHROMIUM} not found: the dashboard test needs Debian's chromium (run scripts/setup.sh)",
                    pytrace=False)
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Up, str]]:
    require_image(TEST_IMAGE)
    name = f"d{uuid.uuid4().hex[:8]}"
    up = _start_up(tmp_path_factory.mktemp("up"), name, "--agents", "1")
    assert up.proc.stdout is not None
    for _ in range(10):  # the line right after "ready"; metrics and context lines follow
        line = up.proc.stdout.readline()
        up.stdout.append(line)
        if line.startswith("dashboard: ") or not line:
            break
    port = free_tcp_port()
    ctl = subprocess.Popen(
        [sys.executable, "-m", "drover", "controller", "--nats", up.url, "--cluster", name, "--id", "ui",
         "--ui-port", str(port), "--ui-actions", *security_args(up)],
        env=up.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield up, f"http://127.0.0.1:{port}/"
    finally:
        ctl.terminate()
        try:
            ctl.wait(30)
        except subprocess.TimeoutExpired:
            ctl.kill()
        _stop_up(up)
        remove_cluster_containers_sync([name])


def test_up_prints_a_dashboard_that_answers(cluster: tuple[Up, str]) -> None:
    up, _ = cluster
    [line] = [ln for ln in up.stdout if ln.startswith("dashboard: ")]
    url = line.split()[1]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/")
    with urllib.request.urlopen(url, timeout=10) as r:
        page = r.read().decode()
    assert r.status == 200 and up.cluster in page and 'id="services"' in page and 'id="events"' in page


def wait_http(url: str) -> None:
    async def answers() -> bool:
        try:
            await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=2).read())
            return True
        except OSError:
            return False

    asyncio.run(wait_for(answers, timeout=60, interval=0.1, message=f"{url} never answered"))


DISTINCT_COLOURS = """async (b64) => {
  const img = new Image(); img.src = 'data:image/png;base64,' + b64; await img.decode();
  const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data; const seen = new Set();
  for (let i = 0; i < d.length; i += 4 * 7) { seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]); }
  return seen.size;
}"""


def test_dashboard_live_in_a_browser(cluster: tuple[Up, str], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    up, url = cluster
    f = tmp_path / "dash.yaml"
    f.write_text(manifest("dash", replicas=1))
    assert up.drover("apply", "-f", str(f)).returncode == 0
    assert up.drover("rollout", "status", "dash", "--timeout", "90s").returncode == 0

    wait_http(url)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_binary(), args=["--no-sandbox"])
        try:
            # The page's CSP forbids eval, which playwright's wait_for_function uses: let the test's own probes in
            # (the page still loads nothing from outside: every request is checked below).
            page = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True).new_page()
            requested: list[str] = []
            page.on("request", lambda r: requested.append(r.url))
            page.goto(url)
            # In the DOM on load, before any live update: R/D, status as `get services` spells it, revision,
            # rollout progress, the node, the container and the events with their full text.
            services = page.inner_text("#services")
            assert "dash" in services and "1/1" in services and "available" in services
            assert "1/1 updated" in services
            row = page.locator("#services tr", has_text="dash").inner_text().split("\t")
            assert row[:4] == ["dash", "1/1", "available", "1"], row
            assert up.json("get", "nodes")[0]["name"] in page.inner_text("#nodes")
            [container] = up.json("get", "containers", "--service", "dash")
            assert container["name"] in page.inner_text("#containers")
            events = up.json("events", "--service", "dash")
            assert events and all(e["message"] in page.inner_text("#events") for e in events[-3:])

            # Live: the stream connects, and a scale from the CLI appears without a reload.
            page.wait_for_function("document.getElementById('live').textContent.startsWith('live')", timeout=30_000)
            page.evaluate("window.__sameDocument = true")
            assert up.drover("scale", "dash", "2").returncode == 0
            page.wait_for_function(
                "document.querySelector('.rd[data-service=dash]').textContent === '2/2'", timeout=90_000
            )
            assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
            assert len(page.locator("#containers tr", has_text="drover-dash-").all()) == 2

            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            import base64

            colours = page.evaluate(DISTINCT_COLOURS, base64.b64encode(shot.read_bytes()).decode())
            assert colours > 10, f"screenshot {shot} looks blank ({colours} colours)"

            # The service page: replicas, revision history, events and the chart.
            page.goto(url + "service/dash")
            assert page.locator("#svc-chart svg").count() == 1
            assert len(page.locator("#svc-replicas tr", has_text="drover-dash-").all()) == 2
            assert "created" in page.inner_text("#svc-history")
            page.screenshot(path=str(ARTIFACTS / "dashboard-service.png"), full_page=True)

            outside = [u for u in requested if not u.startswith(url) and not u.startswith("data:")]
            assert outside == [], outside
        finally:
            browser.close()
    up.drover("delete", "service", "dash")


def post_action(url: str, verb: str, body: dict[str, Any], credentials: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url + "api/action", method="POST",
        data=json.dumps({"verb": verb, "body": body, "credentials": credentials}).encode(),
        headers={"Content-Type": "application/json", "X-Drover-Confirm": "yes"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_actions_run_with_the_users_own_credentials(cluster: tuple[Up, str], tmp_path: Path) -> None:
    up, url = cluster
    ctx = json.loads((up.home / "context.json").read_text())
    assert ctx.get("creds"), "drover up writes admin credentials into the context"
    f = tmp_path / "act.yaml"
    f.write_text(manifest("act", replicas=1))
    assert up.drover("apply", "-f", str(f)).returncode == 0
    wait_http(url)
    reader = tmp_path / "reader.creds"
    r = up.drover("credentials", "client", "--read-only", "-o", str(reader))
    assert r.returncode == 0, r.stderr
    status, reply = post_action(url, "scale", {"name": "act", "replicas": 3}, reader.read_text())
    assert (status, reply["ok"]) == (502, False), reply
    assert up.json("get", "services", "act")[0]["replicas"] == 1  # refused by the NATS server
    status, reply = post_action(url, "scale", {"name": "act", "replicas": 3}, Path(ctx["creds"]).read_text())
    assert (status, reply["ok"]) == (200, True), reply
    assert up.json("get", "services", "act")[0]["replicas"] == 3
    status, reply = post_action(url, "scale", {"name": "act", "replicas": 3}, "not credentials")
    assert status == 502 and not reply["ok"]
    up.drover("delete", "service", "act")
