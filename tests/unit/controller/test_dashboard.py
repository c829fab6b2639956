"""The dashboard's pure rendering and its HTTP/SSE server, with a fake API behind it (no cluster)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp

from drover.controller.dashboard import Dashboard, render
from drover.shared.errors import NotFoundError
from tests.fixtures.wait import wait_for

NOW = 1_800_000_000.0
SERVICE = {
    "name": "web", "image": "local/busybox:latest", "revision": 3, "replicas": 3, "running": 2, "ready": 2,
    "updated": 1, "status": "progressing", "message": "",
}
NODE = {
    "name": "n1", "status": "ready", "address": "127.0.0.1", "capacity": {"cpu": 2.0, "memory": 2**31},
    "allocated": {"cpu": 0.5, "memory": 2**29}, "containers": 2, "last_heartbeat": "2027-01-15T08:00:00.000Z",
}
CONTAINER = {
    "name": "drover-web-abc", "service": "web", "node": "n1", "revision": 3, "state": "running", "ready": True,
    "restarts": 1, "host_port": 32768,
}
EVENT = {"time": "2027-01-15T07:59:58.000Z", "kind": "probe-failed", "service": "web", "node": "n1",
         "message": "health check failed: <b>GET /</b> returned 500 " + "x" * 300}


def test_services_row_shows_ready_of_desired_status_revision_and_progress() -> None:
    html = render.services([SERVICE], {"web": {"policy": {"min": 1, "max": 5}, "enabled": True, "desired": 4}})
    assert '<span class="rd" data-service="web">2/3</span>' in html
    assert "st-progressing" in html and ">progressing<" in html
    assert "<td>3</td>" in html
    assert 'style="width:33%"' in html and "1/3 updated" in html
    assert "on 1-5 → 4" in html


def test_events_keep_the_full_message_escaped() -> None:
    html = render.events([EVENT])
    assert "&lt;b&gt;GET /&lt;/b&gt;" in html and "<b>GET" not in html
    assert "x" * 300 in html


def test_nodes_show_allocation_bars_and_heartbeat_age() -> None:
    html = render.nodes([NODE], now=1_800_000_000.0)
    assert "500m / 2 cpu" in html and "width:25%" in html and "width:25%" in html
    now = render.datetime.fromisoformat("2027-01-15T08:00:07+00:00").timestamp()
    assert ">7s<" in render.nodes([NODE], now=now)


def test_long_tables_are_cut_with_a_note() -> None:
    rows = [dict(CONTAINER, name=f"drover-web-{i}") for i in range(render.MAX_ROWS + 7)]
    html = render.containers(rows)
    assert html.count("<tr>") == render.MAX_ROWS + 2  # header, rows, the note
    assert "… and 7 more (drover get containers)" in html


def test_chart_draws_ready_and_rate_lines() -> None:
    svg = render.chart([(NOW - 60, 1, 0.0), (NOW - 30, 2, 5.0), (NOW, 3, 2.5)], NOW)
    assert svg.startswith("<svg") and svg.count("<polyline") == 2
    assert "ready 3 (max 3)" in svg and "2.5 req/s (max 5.0)" in svg


class FakeApi:
    def __init__(self) -> None:
        self.services = [dict(SERVICE)]

    async def __call__(self, verb: str, body: dict[str, Any]) -> Any:
        if verb == "get_services":
            return self.services
        if verb == "get_nodes":
            return [NODE]
        if verb == "get_containers":
            return [CONTAINER]
        if verb == "events":
            return [EVENT]
        if verb == "describe_service":
            if body["name"] != "web":
                raise NotFoundError("no")
            return {"service": self.services[0], "containers": [CONTAINER], "history": [], "events": [EVENT],
                    "autoscale": {"policy": None}}
        raise AssertionError(verb)


async def test_server_pages_and_live_stream() -> None:
    api = FakeApi()
    dash = Dashboard(api, lambda: {"n1": {"web": 3.0}}, cluster="c1", port=0, tick=0.05)
    task = asyncio.ensure_future(dash.run())
    try:
        await wait_for(lambda: dash.bound, timeout=4, interval=0.02, message="the dashboard never bound")
        assert dash.bound is not None
        base = f"http://127.0.0.1:{dash.bound[1]}"
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/") as r:
                page = await r.text()
            assert r.status == 200
            for needle in ('data-service="web">2/3<', ">progressing<", "drover-web-abc", "x" * 300, ">n1<"):
                assert needle in page
            assert "http://" not in page and "https://" not in page  # nothing from outside
            async with http.get(base + "/nodes") as r:
                nodes_page = await r.text()
            assert "500m / 2 cpu" in nodes_page and 'id="events"' not in nodes_page
            async with http.get(base + "/events") as r:
                assert "x" * 300 in await r.text()
            async with http.get(base + "/service/web") as r:
                assert "<svg" in await r.text()
            async with http.get(base + "/service/nope") as r:
                assert 'service "nope" not found' in await r.text()
            async with http.get(base + "/api/state") as r:
                assert (await r.json())["services"][0]["name"] == "web"
            async with http.get(base + "/stream") as r:
                assert r.headers["Content-Type"].startswith("text/event-stream")
                first = json.loads((await r.content.readline()).decode()[len("data: "):])
                assert 'data-service="web">2/3<' in first["services"]
                await r.content.readline()
                api.services = [dict(SERVICE, replicas=5, ready=5, updated=5, status="available")]
                line = b""
                while not line.startswith(b"data: "):
                    line = await asyncio.wait_for(r.content.readline(), 10)
                update = json.loads(line.decode()[len("data: "):])
                assert set(update) == {"services"}  # only what changed is sent
                assert 'data-service="web">5/5<' in update["services"]
        assert dash.samples["web"][-1][2] == 3.0  # request rate summed over the nodes' proxies
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_actions_are_off_by_default_and_checked_when_on() -> None:
    from drover.shared.models import ApiReply

    calls: list[tuple[str, str, dict[str, Any]]] = []

    async def act(creds: str, verb: str, body: dict[str, Any]) -> ApiReply:
        calls.append((creds, verb, body))
        return ApiReply(ok=True, data={"name": body.get("name")})

    for actor in (None, act):
        dash = Dashboard(FakeApi(), dict, cluster="c1", port=0, tick=0.05, act=actor)
        task = asyncio.ensure_future(dash.run())
        try:
            await wait_for(lambda d=dash: d.bound, timeout=4, interval=0.02, message="the dashboard never bound")
            assert dash.bound is not None
            base = f"http://127.0.0.1:{dash.bound[1]}"
            ok_body = {"verb": "scale", "body": {"name": "web", "replicas": 4}, "credentials": "CREDS"}
            confirm = {"X-Drover-Confirm": "yes"}
            async with aiohttp.ClientSession() as http:
                async with http.get(base + "/") as r:
                    page = await r.text()
                async with http.post(base + "/api/action", json=ok_body, headers=confirm) as r:
                    status = r.status
                if actor is None:
                    assert status in (404, 405) and "button" not in page and calls == []
                    continue
                assert status == 200 and calls == [("CREDS", "scale", {"name": "web", "replicas": 4})]
                assert 'data-verb="scale"' in page and 'data-verb="cordon"' in page and 'id="act-creds"' in page
                async with http.post(base + "/api/action", json=ok_body) as r:
                    assert r.status == 403  # no confirmation header: not from the page's own script
                for bad in (
                    {**ok_body, "verb": "delete"},
                    {**ok_body, "credentials": ""},
                    {**ok_body, "body": {"name": "web", "replicas": -1}},
                    {"verb": "cordon", "body": {}, "credentials": "C"},
                ):
                    async with http.post(base + "/api/action", json=bad, headers=confirm) as r:
                        assert r.status == 400, bad
                assert len(calls) == 1
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
