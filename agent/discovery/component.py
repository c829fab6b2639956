"""``Discovery``: one node's gossip membership and endpoints, per-node proxy, DNS responder and endpoints
API, wired together (see the package doc)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from drover.agent.config import AgentConfig
from drover.agent.discovery.announce import Announcer
from drover.agent.discovery.api import answer_endpoints
from drover.agent.discovery.keys import (
    backends_by_service,
    proxy_strategy,
    seeds_from_records,
    service_env,
    services_from_records,
)
from drover.agent.discovery.kvwatch import follow_bucket, read_all
from drover.agent.discovery.metrics import DiscoveryCollector
from drover.agent.dns import DnsResponder, lookup_table
from drover.agent.drivers.base import spec_env
from drover.agent.gossip import Endpoint, GossipConfig, GossipNode
from drover.agent.proxy import Backend, NodeProxy
from drover.shared.bus import ClusterStore
from drover.shared.cluster_key import cluster_key
from drover.shared.models import AssignedContainer, ContainerStatus
from drover.shared.subjects import Names
from drover.shared.tasks import Supervisor

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from prometheus_client import CollectorRegistry

GOSSIP_CONFIG = GossipConfig(suspicion_timeout=1.0, scale_suspicion=True)


class Discovery:
    """Gossip, the per-node proxy, DNS and the endpoints API of one node. Narrow dependencies: the agent's
    config, its NATS connection and store, the subject names, its supervisor and (optional) metrics
    registry. ``on_statuses`` is to be registered as a status listener of the agent."""

    def __init__(
        self,
        cfg: AgentConfig,
        nc: NATS,
        store: ClusterStore,
        names: Names,
        sup: Supervisor,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.cfg = cfg
        self.nc = nc
        self.store = store
        self.names = names
        self.sup = sup
        self.registry = registry
        self.log = structlog.get_logger("drover.agent.discovery").bind(node=cfg.node)
        self.strategy = proxy_strategy(self.cfg.proxy_strategy)
        self.gossip: GossipNode | None = None
        self.proxy: NodeProxy | None = None
        self.services: dict[str, int] = {}  # proxy key -> expose port (last known; kept while NATS is away)
        self.dns: DnsResponder | None = None
        self.dns_names: dict[str, int] = {}  # DNS key (NAME, NAME:PORTNAME) -> expose port
        self.seeds: list[tuple[str, str, int]] = []
        self.bad_records = 0
        self.backends: dict[str, tuple[Backend, ...]] = {}
        self.announcer = Announcer(cfg.node, cfg.address, self.log)
        self._sub: Any = None
        self._stopped = False

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> int:
        """Gossip up, proxy listening on the known services, API subscribed; the gossip port (for the
        registration: call before the node registers)."""
        if self.cfg.dns_port is not None:  # first: a port that cannot be bound fails the start cleanly
            dns = DnsResponder(self.cfg.address, self.cfg.dns_port, lambda k: self.dns_names.get(k), self.cfg.cluster)
            await dns.start()
            self.dns = dns
        key = self.cfg.gossip_key or await cluster_key(self.store)
        gossip = GossipNode(self.cfg.node, self.cfg.address, key, port=0, config=GOSSIP_CONFIG)
        gossip.on_change(self._rebuild_backends)
        port = await gossip.start()
        self.gossip = gossip
        self.announcer.publish = gossip.set_local_endpoints
        self.announcer.announce()  # statuses that came before the gossip was up
        self.proxy = NodeProxy(self.cfg.address, self.resolve, strategy=self.strategy)
        if self.registry is not None:
            with contextlib.suppress(Exception):
                self.registry.register(DiscoveryCollector(self))
        try:
            await self._apply_services(await read_all(self.store.services))
            self._apply_nodes(await read_all(self.store.nodes))
        except Exception as exc:  # NATS hiccup: the follow loops below catch up
            self.log.warning("first read of services/nodes failed", error=repr(exc))
        self._sub = await self.nc.subscribe(self.names.endpoints, queue="agents", cb=self._on_endpoints)
        store = self.store
        self.sup.start("discovery-nodes", lambda: follow_bucket(lambda: store.nodes, self._on_nodes, self.log))
        self.sup.start(
            "discovery-services", lambda: follow_bucket(lambda: store.services, self._apply_services, self.log)
        )
        self.log.info(
            "discovery started",
            gossip_port=port,
            dns_port=self.dns.port if self.dns is not None else None,
            services=self.services,
            strategy=self.strategy,
        )
        return port

    async def stop(self) -> None:
        """Leave the gossip (peers drop this node's endpoints), close the proxy and the API."""
        self._stopped = True
        self.announcer.publish = None
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
        return self.backends.get(key, ())

    def _rebuild_backends(self) -> None:
        if self.gossip is not None:
            self.backends = backends_by_service(self.gossip.endpoints())

    def endpoints(self, service: str | None = None) -> list[Endpoint]:
        return self.gossip.endpoints(service) if self.gossip is not None else []

    async def _on_endpoints(self, msg: Any) -> None:
        await answer_endpoints(msg, self.endpoints)

    def on_statuses(self, statuses: list[ContainerStatus]) -> None:
        self.announcer.on_statuses(statuses)

    async def withdraw(self, container_ids: Iterable[str]) -> None:
        """Take these containers out of the endpoint table before they are stopped (``Announcer``)."""
        await self.announcer.withdraw(container_ids)

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
