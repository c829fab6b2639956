"""The web dashboard: an aiohttp server inside the controller, fed from the controller's own state.

``Dashboard.run`` is one supervised task: it serves ``/`` (services, nodes, containers, events), ``/nodes``
and ``/events`` (those sections alone), ``/service/NAME`` (replicas, revision history, events, a chart of
ready replicas and request rate), ``/stream`` and ``/stream/service/NAME`` (server-sent events carrying
re-rendered sections) and ``/api/state`` (the same data as JSON), and samples each service's ready count and
request rate every ``tick`` for the charts. It is read-only: it only calls the API's read verbs through
``query``.
Any controller serves it (every one watches the same buckets); the autoscaler's last decision is known to
the leader only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from drover.controller.dashboard import render
from drover.controller.dashboard.actions import Act, ActionError, check
from drover.controller.dashboard.page import page, sse
from drover.shared.errors import NotFoundError

#: ``query(verb, body)``: an API read (``get_services``, ``describe_service`` …) answered in-process
Query = Callable[[str, dict[str, Any]], Awaitable[Any]]
#: ``rates()``: ``{node: {service: new connections per second through that node's proxy}}``
Rates = Callable[[], Mapping[str, Mapping[str, float]]]

HISTORY_SECONDS = 600.0
KEEPALIVE = 15.0  # an SSE comment at least this often keeps proxies and browsers from closing the stream
SAMPLE_EVERY = 5  # ticks between chart samples: 60 points over the charts' 5 minutes is plenty
MAX_AUTOSCALE_LOOKUPS = 50  # describing every service each tick is fine for a few dozen, not for thousands

MAIN_LAYOUT = [("services", "Services"), ("nodes", "Nodes"), ("containers", "Containers"), ("events", "Events")]
SERVICE_LAYOUT = [
    ("svc-summary", "Service"),
    ("svc-chart", "Ready replicas and request rate (last 5 minutes)"),
    ("svc-replicas", "Replicas"),
    ("svc-history", "Revision history"),
    ("svc-events", "Recent events"),
]


class Dashboard:
    def __init__(
        self,
        query: Query,
        rates: Rates,
        *,
        cluster: str,
        address: str = "127.0.0.1",
        port: int = 0,
        tick: float = 1.0,
        clock: Callable[[], float] = time.time,
        act: Act | None = None,
    ) -> None:
        self.query = query
        self.rates = rates
        self.cluster = cluster
        self.address = address
        self.port = port
        self.tick = tick
        self.clock = clock
        self.act = act  # None: read-only (the default); else how an action is carried out
        self.samples: dict[str, deque[tuple[float, int, float]]] = {}
        self._changed = asyncio.Event()
        self._closing = False
        self._generation = 0  # counts ticks
        self._main_cache: tuple[int, dict[str, str]] | None = None
        self.bound: tuple[str, int] | None = None  # where it listens once started (port 0 → a free one)

    # --- serving ---------------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._main_page)
        app.router.add_get("/service/{name}", self._service_page)
        app.router.add_get("/nodes", self._section_page("nodes", "Nodes"))
        app.router.add_get("/events", self._section_page("events", "Events"))
        app.router.add_get("/stream", self._main_stream)
        app.router.add_get("/stream/service/{name}", self._service_stream)
        app.router.add_get("/api/state", self._state)
        if self.act is not None:
            app.router.add_post("/api/action", self._action)
        return app

    async def run(self) -> None:
        """Serve until cancelled; meanwhile sample the charts and wake the streams every ``tick``."""
        # Open event streams end on their own when ``_closing`` is set; a short timeout covers the rest.
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.address, self.port)
            await site.start()
            server = getattr(site, "_server", None)
            sockets = getattr(server, "sockets", None) or []
            if sockets:
                host, port = sockets[0].getsockname()[:2]
                self.bound = (host, port)
            while True:
                if self._generation % SAMPLE_EVERY == 0:
                    with contextlib.suppress(Exception):  # a failed sample only leaves a gap in the chart
                        await self.sample()
                self._generation += 1
                changed, self._changed = self._changed, asyncio.Event()
                changed.set()
                await asyncio.sleep(self.tick)  # the period of the charts' samples and of the live updates
        finally:
            self._closing = True
            self._changed.set()
            await runner.cleanup()

    async def sample(self) -> None:
        now = self.clock()
        rates = self.rates()
        services = await self.query("get_services", {})
        for row in services:
            name = str(row.get("name"))
            rate = sum(float(per.get(name, 0.0) or 0.0) for per in rates.values())
            series = self.samples.setdefault(name, deque())
            series.append((now, int(row.get("ready") or 0), rate))
            while series and now - series[0][0] > HISTORY_SECONDS:
                series.popleft()
        for gone in set(self.samples) - {str(r.get("name")) for r in services}:
            del self.samples[gone]

    # --- content ---------------------------------------------------------------------------------------------
    async def state(self) -> dict[str, Any]:
        services = await self.query("get_services", {})
        autoscale: dict[str, Any] = {}
        for row in services[:MAX_AUTOSCALE_LOOKUPS]:
            with contextlib.suppress(Exception):
                detail = await self.query("describe_service", {"name": row["name"]})
                autoscale[row["name"]] = detail.get("autoscale")
        return {
            "services": services,
            "autoscale": autoscale,
            "nodes": await self.query("get_nodes", {}),
            "containers": await self.query("get_containers", {}),
            "events": await self.query("events", {"limit": 100}),
        }

    async def main_sections(self) -> dict[str, str]:
        # Built once a tick however many pages are open: every stream of the same tick shares it.
        if self._main_cache is not None and self._main_cache[0] == self._generation:
            return self._main_cache[1]
        try:
            s = await self.state()
        except Exception as exc:  # keep the page (and the stream) alive; show why instead
            return {"services": f'<div class="error">cannot read the cluster state: {render.esc(exc)}</div>'}
        sections = {
            "services": render.services(s["services"], s["autoscale"], actions=self.act is not None),
            "nodes": render.nodes(s["nodes"], self.clock(), actions=self.act is not None),
            "containers": render.containers(s["containers"]),
            "events": render.events(s["events"]),
        }
        self._main_cache = (self._generation, sections)
        return sections

    async def service_sections(self, name: str) -> dict[str, str]:
        try:
            d = await self.query("describe_service", {"name": name})
        except NotFoundError:
            return {"svc-summary": f'<div class="error">service "{render.esc(name)}" not found</div>'}
        except Exception as exc:
            return {"svc-summary": f'<div class="error">cannot read the service: {render.esc(exc)}</div>'}
        return {
            "svc-summary": render.services(
                [d["service"]], {name: d.get("autoscale") or {}}, actions=self.act is not None
            ),
            "svc-chart": render.chart(list(self.samples.get(name, ())), self.clock()),
            "svc-replicas": render.containers(d.get("containers") or [], show_service=False),
            "svc-history": render.history(d.get("history") or []),
            "svc-events": render.events(d.get("events") or []),
        }

    # --- handlers --------------------------------------------------------------------------------------------
    async def _main_page(self, _req: web.Request) -> web.Response:
        html = page(
            "overview", self.cluster, "/stream", await self.main_sections(), MAIN_LAYOUT, actions=self.act is not None
        )
        return web.Response(text=html, content_type="text/html")

    def _section_page(self, sid: str, heading: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        """A page of one section of the overview (it follows the overview's stream)."""

        async def handler(_req: web.Request) -> web.Response:
            html = page(heading.lower(), self.cluster, "/stream", await self.main_sections(), [(sid, heading)])
            return web.Response(text=html, content_type="text/html")

        return handler

    async def _service_page(self, req: web.Request) -> web.Response:
        name = req.match_info["name"]
        sections = await self.service_sections(name)
        html = page(
            f"service {name}", self.cluster, f"/stream/service/{name}", sections, SERVICE_LAYOUT,
            actions=self.act is not None,
        )
        return web.Response(text=html, content_type="text/html")

    async def _action(self, req: web.Request) -> web.Response:
        # A cross-site form cannot set this header (and a cross-site fetch with it needs a CORS preflight we
        # never answer): only the page's own script can post an action.
        if req.headers.get("X-Drover-Confirm") != "yes":
            return web.json_response({"ok": False, "error": "missing confirmation"}, status=403)
        try:
            creds, verb, body = check(await req.json())
        except (ActionError, ValueError) as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        assert self.act is not None
        reply = await self.act(creds, verb, body)
        return web.json_response(
            {"ok": reply.ok, "error": reply.error, "data": reply.data}, status=200 if reply.ok else 502
        )

    async def _state(self, _req: web.Request) -> web.Response:
        return web.json_response(await self.state())

    async def _main_stream(self, req: web.Request) -> web.StreamResponse:
        return await self._stream(req, self.main_sections)

    async def _service_stream(self, req: web.Request) -> web.StreamResponse:
        name = req.match_info["name"]
        return await self._stream(req, lambda: self.service_sections(name))

    async def _stream(self, req: web.Request, build: Callable[[], Awaitable[dict[str, str]]]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(req)
        sent: dict[str, str] = {}
        try:
            while not self._closing:
                sections = await build()
                changed = {k: v for k, v in sections.items() if sent.get(k) != v}
                if changed:
                    await resp.write(sse(changed))
                    sent.update(changed)
                try:
                    await asyncio.wait_for(self._changed.wait(), KEEPALIVE)
                except TimeoutError:
                    await resp.write(b": keepalive\n\n")
        except ConnectionResetError:
            pass  # the browser went away: nothing to clean up but the response
        return resp
