"""Discovery inside the agent: gossip membership and endpoints, the per-node proxy, the endpoints API.

``Discovery`` is owned by the ``Agent`` and started right after the KV store is open, before the node
registers (its gossip port goes into the registration):

* **Gossip.** A ``GossipNode`` on ``(cfg.address, random UDP port)`` keyed with the cluster key
  (``cfg.gossip_key``, else ``shared.cluster_key``). Seeds are the other nodes' ``(name, address,
  gossip_port)`` from the nodes bucket, followed by a watch that is re-created (a full re-list) every
  ``RELIST_INTERVAL`` seconds, so a NATS restart or a missed update heals on its own.
* **Local endpoints.** Rebuilt from the agent's container statuses (``add_status_listener``): every ready,
  running container with a host port is an ``Endpoint(service, cfg.address, host_port, node, replica id,
  revision, ready=True)`` (``network: host`` containers report their container port as host port).
  A container the agent is about to stop is withdrawn first (``withdraw``: the entry becomes a tombstone,
  gossip gets ``DRAIN_DELAY`` to spread it, then the agent stops the container), so proxies never send
  new connections to a draining container.
* **Proxy.** A ``NodeProxy`` on ``cfg.address`` listening on the ``expose`` port of every service in the
  services bucket; the last known map is kept while NATS is away. Backends come from the gossip table
  (a tuple per proxy key, rebuilt on every gossip change), so routing goes on without NATS.
* **Several exposed ports.** The first port of a service's spec is the service itself: proxy key and
  gossip service ``NAME``. Any further port is keyed ``NAME:PORTNAME`` (proxy listener and gossip
  endpoints alike); ``drover endpoints NAME`` shows the first port's endpoints.
* **Env.** Containers get ``DROVER_SERVICE_<KEY>_ADDR=<cfg.address>:<expose>`` for every proxy key known
  when they are created (upper-cased, every character outside ``[A-Za-z0-9]`` turned into ``_``, so
  ``my-api`` → ``DROVER_SERVICE_MY_API_ADDR`` and ``web:admin`` → ``DROVER_SERVICE_WEB_ADMIN_ADDR``);
  the spec's own ``env`` wins on a clash.
* **DNS.** With ``cfg.dns_port`` set, a ``DnsResponder`` (``agent/dns``) on ``(cfg.address, dns_port)``
  answers ``A <service>.drover`` with ``cfg.address`` and ``SRV _<port>._tcp.<service>.drover`` with the
  expose port, from the services bucket (``lookup_table``; the last known table is kept while NATS is away).
* **Endpoints API.** ``Names.endpoints`` (queue group ``agents``): ``{"service": NAME}`` (optional) →
  ``{"ok": true, "endpoints": [{"service", "address", "port", "node", "container", "ready", "revision"}]}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from drover.agent.dns import DnsResponder, lookup_table
from drover.agent.drivers.base import exposed_ports as spec_exposed_ports
from drover.agent.drivers.base import spec_env
from drover.agent.gossip import Endpoint, GossipConfig, GossipNode
from drover.agent.proxy import LEAST_CONNECTIONS, ROUND_ROBIN, Backend, NodeProxy
from drover.shared import wire
from drover.shared.cluster_key import cluster_key
from drover.shared.errors import WireError
from drover.shared.models import AssignedContainer, ContainerState, ContainerStatus, NodeRegistration, ServiceRecord

if TYPE_CHECKING:
    from drover.agent.main import Agent

DRAIN_DELAY = 0.3  # seconds gossip gets to spread a withdrawn endpoint before its container is stopped
RELIST_INTERVAL = 5.0  # the KV watches are re-created (a full re-list) this often
WITHDRAWN_TTL = 120.0  # forget a withdrawn container id after this long
GOSSIP_CONFIG = GossipConfig(suspicion_timeout=1.0, scale_suspicion=True)

_STRATEGIES = {
    "round-robin": ROUND_ROBIN,
    "rr": ROUND_ROBIN,
    "least-conn": LEAST_CONNECTIONS,
    "least-connections": LEAST_CONNECTIONS,
}
_ENV_UNSAFE = re.compile(r"[^A-Za-z0-9]")


# --- pure helpers ------------------------------------------------------------------------------------


def proxy_strategy(name: str) -> str:
    """The proxy's strategy name for ``AgentConfig.proxy_strategy`` (``least-conn`` is accepted)."""
    try:
        return _STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown proxy strategy {name!r}: expected round-robin or least-conn") from None


def proxy_key(service: str, index: int, port_name: str) -> str:
    return service if index == 0 else f"{service}:{port_name}"


def exposed_ports(service: str, spec: Mapping[str, Any]) -> dict[str, int]:
    """{proxy key: expose port} of one service spec (see the module doc for the keys)."""
    return {proxy_key(service, i, name): expose for i, name, expose in spec_exposed_ports(spec)}


def services_from_records(records: Mapping[str, bytes]) -> tuple[dict[str, int], int]:
    """The proxy map of every live service in a services-bucket snapshot, and how many entries were bad."""
    out: dict[str, int] = {}
    bad = 0
    for key, data in sorted(records.items()):
        try:
            rec = ServiceRecord.from_wire(data)
        except WireError:
            bad += 1
            continue
        if not rec.deleted:
            out.update(exposed_ports(rec.name or key, rec.spec))
    return out, bad


def seeds_from_records(records: Mapping[str, bytes], me: str) -> list[tuple[str, str, int]]:
    """(name, address, gossip port) of every other registered node that has a gossip port."""
    out: list[tuple[str, str, int]] = []
    for key, data in sorted(records.items()):
        try:
            reg = NodeRegistration.from_wire(data)
        except WireError:
            continue
        name = reg.name or key
        if name != me and reg.gossip_port > 0:
            out.append((name, reg.address, reg.gossip_port))
    return out


def env_name(key: str) -> str:
    return f"DROVER_SERVICE_{_ENV_UNSAFE.sub('_', key).upper()}_ADDR"


def service_env(services: Mapping[str, int], address: str) -> dict[str, str]:
    return {env_name(key): f"{address}:{port}" for key, port in sorted(services.items())}


def local_endpoints(
    statuses: Iterable[ContainerStatus], node: str, address: str, withdrawn: Collection[str] = ()
) -> list[Endpoint]:
    """The endpoints this node announces: ready running containers with a host port, minus withdrawn ones."""
    out: list[Endpoint] = []
    for s in statuses:
        if not s.ready or s.state != ContainerState.RUNNING or not s.host_port:
            continue
        if s.container_id and s.container_id in withdrawn:
            continue
        out.append(Endpoint(s.service, address, s.host_port, node, s.id, s.revision, True))
        for name, host in list(s.ports.items())[1:]:
            out.append(Endpoint(proxy_key(s.service, 1, name), address, host, node, s.id, s.revision, True))
    return out


def endpoint_dict(ep: Endpoint) -> dict[str, Any]:
    return {
        "service": ep.service,
        "address": ep.address,
        "port": ep.port,
        "node": ep.node,
        "container": ep.container,
        "ready": ep.ready,
        "revision": ep.revision,
    }


def backends_by_service(endpoints: Iterable[Endpoint]) -> dict[str, tuple[Backend, ...]]:
    grouped: dict[str, list[Backend]] = {}
    for ep in endpoints:
        if ep.ready:
            grouped.setdefault(ep.service, []).append(Backend(ep.address, ep.port, f"{ep.node}/{ep.container}"))
    return {s: tuple(bs) for s, bs in grouped.items()}


# --- the component -----------------------------------------------------------------------------------


class Discovery:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.cfg = agent.cfg
        self.log = structlog.get_logger("drover.agent.discovery").bind(node=agent.node)
        self.strategy = proxy_strategy(self.cfg.proxy_strategy)
        self.gossip: GossipNode | None = None
        self.proxy: NodeProxy | None = None
        self.services: dict[str, int] = {}  # proxy key -> expose port (last known; kept while NATS is away)
        self.dns: DnsResponder | None = None
        self.dns_names: dict[str, int] = {}  # DNS key (NAME, NAME:PORTNAME) -> expose port
        self.seeds: list[tuple[str, str, int]] = []
        self.bad_records = 0
        self._backends: dict[str, tuple[Backend, ...]] = {}
        self._statuses: list[ContainerStatus] = []
        self._withdrawn: dict[str, float] = {}  # container id -> when it was withdrawn
        self._gone_at: dict[str, float] = {}  # container id -> when its endpoints left the announcement
        self._announced: list[Endpoint] = []
        self._announced_statuses: list[ContainerStatus] = []  # the statuses ``_announced`` came from
        self._sub: Any = None
        self._stopped = False

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Gossip up (sets ``agent.gossip_port``), proxy listening on the known services, API subscribed.
        Needs the agent's NATS connection and store; call before the agent registers."""
        agent = self.agent
        assert agent.store is not None and agent.nc is not None and agent.sup is not None
        if self.cfg.dns_port is not None:  # first: a port that cannot be bound fails the start cleanly
            dns = DnsResponder(self.cfg.address, self.cfg.dns_port, lambda k: self.dns_names.get(k), self.cfg.cluster)
            await dns.start()
            self.dns = dns
        key = self.cfg.gossip_key or await cluster_key(agent.store)
        gossip = GossipNode(self.cfg.node, self.cfg.address, key, port=0, config=GOSSIP_CONFIG)
        gossip.on_change(self._rebuild_backends)
        agent.gossip_port = await gossip.start()
        self.gossip = gossip
        self.proxy = NodeProxy(self.cfg.address, self.resolve, strategy=self.strategy)
        agent.add_status_listener(self._on_statuses)
        with contextlib.suppress(Exception):
            agent.metrics.registry.register(_Collector(self))
        try:
            await self._apply_services(await _read_all(agent.store.services))
            self._apply_nodes(await _read_all(agent.store.nodes))
        except Exception as exc:  # NATS hiccup: the follow loops below catch up
            self.log.warning("first read of services/nodes failed", error=repr(exc))
        self._sub = await agent.nc.subscribe(agent.names.endpoints, queue="agents", cb=self._on_endpoints)
        store = agent.store
        agent.sup.start("discovery-nodes", lambda: self._follow(lambda: store.nodes, self._on_nodes))
        agent.sup.start("discovery-services", lambda: self._follow(lambda: store.services, self._apply_services))
        self.log.info(
            "discovery started",
            gossip_port=agent.gossip_port,
            dns_port=self.dns.port if self.dns is not None else None,
            services=self.services,
            strategy=self.strategy,
        )

    async def stop(self) -> None:
        """Leave the gossip (peers drop this node's endpoints), close the proxy and the API."""
        self._stopped = True
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        if self.gossip is not None:
            with contextlib.suppress(Exception):
                await self.gossip.stop(leave=True)
        if self.proxy is not None:
            with contextlib.suppress(Exception):
                await self.proxy.close()
        if self.dns is not None:
            await self.dns.stop()

    # --- endpoints ---------------------------------------------------------------------------------

    def resolve(self, key: str) -> Sequence[Backend]:
        return self._backends.get(key, ())

    def _rebuild_backends(self) -> None:
        if self.gossip is not None:
            self._backends = backends_by_service(self.gossip.endpoints())

    def endpoints(self, service: str | None = None) -> list[Endpoint]:
        return self.gossip.endpoints(service) if self.gossip is not None else []

    def _on_statuses(self, statuses: list[ContainerStatus]) -> None:
        self._statuses = statuses
        self._announce()

    def _announce(self) -> bool:
        """Put the local endpoints into the gossip; True when some endpoint went away."""
        if self.gossip is None or self._stopped:
            return False
        now = time.monotonic()
        cutoff = now - WITHDRAWN_TTL
        self._withdrawn = {c: t for c, t in self._withdrawn.items() if t > cutoff}
        self._gone_at = {c: t for c, t in self._gone_at.items() if t > cutoff}
        eps = local_endpoints(self._statuses, self.cfg.node, self.cfg.address, self._withdrawn)
        gone = set(self._announced) - set(eps)
        if gone:  # which containers went: their stop must still give the tombstones DRAIN_DELAY to spread
            replicas = {(e.container, e.revision) for e in gone}
            before = {(s.id, s.revision): s.container_id for s in self._announced_statuses}
            for key in replicas:
                if before.get(key):
                    self._gone_at.setdefault(before[key], now)
        self._announced = eps
        self._announced_statuses = [s for s in self._statuses if s.container_id]
        self.gossip.set_local_endpoints(eps)
        return bool(gone)

    async def withdraw(self, container_ids: Iterable[str]) -> None:
        """Take these containers out of the endpoint table before they are stopped: the tombstones go out
        at once and get ``DRAIN_DELAY`` seconds to spread. Returns at once when none of them was announced."""
        now = time.monotonic()
        ids = [c for c in container_ids if c]
        new = [c for c in ids if c not in self._withdrawn]
        for c in new:
            self._withdrawn[c] = now
        if new and self._announce():
            self.log.info("endpoints withdrawn before stop", containers=[c[:12] for c in new])
        # Measured from when each endpoint actually left the announcement: that may have happened earlier
        # (the replica left the assignment, so its status went) and need not be repeated (another worker).
        gone = [self._gone_at[c] for c in ids if c in self._gone_at]
        wait = max((t + DRAIN_DELAY - time.monotonic() for t in gone), default=0.0)
        if wait > 0:
            await asyncio.sleep(wait)

    # --- env for new containers --------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return service_env(self.services, self.cfg.address)

    def with_env(self, a: AssignedContainer) -> AssignedContainer:
        """``a`` with ``DROVER_SERVICE_<KEY>_ADDR`` for every known exposed service added to its env."""
        extra = self.env()
        if not extra:
            return a
        spec = dict(a.spec)
        spec["env"] = {**extra, **spec_env(spec)}
        return a.model_copy(update={"spec": spec})

    # --- KV: services and nodes --------------------------------------------------------------------

    async def _apply_services(self, records: Mapping[str, bytes]) -> None:
        services, bad = services_from_records(records)
        self.bad_records += bad
        self.dns_names = lookup_table(records)
        if self.proxy is None or self._stopped:
            return
        if services != self.services or self.proxy.errors():
            if services != self.services:
                self.log.info("proxied services", services=services)
            self.services = services
            await self.proxy.set_services(services)

    async def _on_nodes(self, records: Mapping[str, bytes]) -> None:
        self._apply_nodes(records)

    def _apply_nodes(self, records: Mapping[str, bytes]) -> None:
        seeds = seeds_from_records(records, self.cfg.node)
        self.seeds = seeds
        if self.gossip is not None and seeds and not self._stopped:
            self.gossip.join(seeds)

    async def _follow(self, get_kv: Callable[[], Any], apply: Callable[[Mapping[str, bytes]], Awaitable[None]]) -> None:
        """Watch a bucket; ``apply(all current values)`` after the initial snapshot and every change. The
        watch is re-created every ``RELIST_INTERVAL`` s (a fresh snapshot: heals missed updates and NATS
        restarts). While NATS is away nothing is applied, so the last known state stays in force."""
        import nats.errors

        loop = asyncio.get_running_loop()
        while True:
            try:
                async with asyncio.timeout(5):
                    watcher = await get_kv().watchall()
            except Exception as exc:
                self.log.debug("watch not (re)created", error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            values: dict[str, bytes] = {}
            loaded = False
            deadline = loop.time() + RELIST_INTERVAL
            try:
                while loop.time() < deadline:
                    try:
                        entry = await watcher.updates(timeout=1.0)
                    except nats.errors.TimeoutError:
                        continue
                    if entry is None:
                        if not loaded:
                            loaded = True
                            await apply(values)
                        continue
                    if entry.operation in ("DEL", "PURGE") or not entry.value:
                        values.pop(entry.key, None)
                    else:
                        values[entry.key] = entry.value
                    if loaded:
                        await apply(values)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.debug("watch failed", error=repr(exc))
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await watcher.stop()

    # --- endpoints API -----------------------------------------------------------------------------

    async def _on_endpoints(self, msg: Any) -> None:
        service: str | None = None
        try:
            if msg.data:
                body = wire.decode(msg.data)
                raw = body.get("service")
                if raw is not None and not isinstance(raw, str):
                    raise WireError("service must be a string")
                service = raw or None
        except WireError as exc:
            reply = {"ok": False, "error": str(exc), "code": "invalid"}
        else:
            reply = {"ok": True, "endpoints": [endpoint_dict(e) for e in self.endpoints(service)]}
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(wire.encode(reply))


async def _read_all(kv: Any) -> dict[str, bytes]:
    """Every live value of a bucket (empty when it has no keys)."""
    from nats.js.errors import KeyNotFoundError, NoKeysError

    try:
        keys = await kv.keys()
    except NoKeysError:
        return {}
    out: dict[str, bytes] = {}
    for k in keys:
        with contextlib.suppress(KeyNotFoundError):
            e = await kv.get(k)
            if e.value:
                out[k] = e.value
    return out


class _Collector:
    """Prometheus view of the gossip and proxy counters (read at scrape time)."""

    def __init__(self, d: Discovery) -> None:
        self.d = d

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        node = self.d.cfg.node
        g = self.d.gossip
        if g is not None:
            c = CounterMetricFamily(
                "drover_agent_gossip_events",
                "Gossip counters (packets, bytes, drops, probes ...)",
                labels=["node", "kind"],
            )
            for k, v in list(g.stats.items()):
                c.add_metric([node, k], v)
            yield c
            m = GaugeMetricFamily("drover_agent_gossip_members", "Gossip members by status", labels=["node", "status"])
            counts: dict[str, int] = {}
            for member in list(g.state.members.values()):
                counts[str(member.status)] = counts.get(str(member.status), 0) + 1
            for status, n in sorted(counts.items()):
                m.add_metric([node, status], n)
            yield m
            e = GaugeMetricFamily(
                "drover_agent_gossip_endpoints", "Ready endpoints in the gossip table", labels=["node"]
            )
            e.add_metric([node], sum(len(b) for b in list(self.d._backends.values())))
            yield e
        if self.d.dns is not None:
            dns = CounterMetricFamily("drover_agent_dns_events", "DNS responder counters", labels=["node", "kind"])
            for k, v in sorted(self.d.dns.stats.items()):
                dns.add_metric([node, k], v)
            yield dns
        p = self.d.proxy
        if p is not None:
            stats = {s: st.as_dict() for s, st in list(p.stats.items())}
            for field, kind in (
                ("connections", "counter"),
                ("failed_attempts", "counter"),
                ("retries", "counter"),
                ("no_backend", "counter"),
                ("active", "gauge"),
            ):
                name = f"drover_agent_proxy_{field}"
                doc = f"Per-node proxy: {field.replace('_', ' ')} by service"
                fam = (
                    CounterMetricFamily(name, doc, labels=["node", "service"])
                    if kind == "counter"
                    else GaugeMetricFamily(name, doc, labels=["node", "service"])
                )
                for service, d in sorted(stats.items()):
                    fam.add_metric([node, service], d[field])
                yield fam
