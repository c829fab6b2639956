"""``Discovery``: one node's gossip membership and endpoints, per-node proxy, DNS responder and endpoints
API, wired together (see the package doc)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from drover.agent.config import AgentConfig
from drover.agent.discovery.announce import Announcer
from drover.agent.discovery.api import answer_endpoints
from drover.agent.discovery.keys import (
    backends_by_service,
    gossip_keys_of,
    proxy_strategy,
    seeds_of,
    service_env,
    services_of,
)
from drover.agent.discovery.kvwatch import RELIST_INTERVAL, apply_on_change
from drover.agent.discovery.metrics import DiscoveryCollector
from drover.agent.dns import DnsResponder, lookup_of
from drover.agent.drivers.base import spec_env
from drover.agent.gossip import Endpoint, GossipConfig, GossipNode
from drover.agent.gossip.identity import NodeKey
from drover.agent.gossip.state import UP
from drover.agent.proxy import Backend, NodeProxy
from drover.shared.bus import ClusterStore
from drover.shared.cluster_key import cluster_key
from drover.shared.informer import Damage, Informer
from drover.shared.models import AssignedContainer, ContainerStatus, NodeRegistration, ServiceRecord
from drover.shared.subjects import Names
from drover.shared.tasks import Supervisor

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from prometheus_client import CollectorRegistry

GOSSIP_CONFIG = GossipConfig(suspicion_timeout=1.0, scale_suspicion=True)
# A (re)starting agent registers, and so is reported ready, only once its gossip has heard a peer (the full
# state a peer sends back holds every endpoint: the proxy can route) or after this long (its peers are away).
PEER_WAIT = 3.0


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
        # The services and nodes buckets through the shared informer (list + watch, relist on reconnect and
        # every RELIST_INTERVAL s, one decode path; a damaged entry is counted once and skipped).
        reconnects = lambda: int(nc.stats.get("reconnects", 0))  # noqa: E731
        self.services_dirty = asyncio.Event()
        self.nodes_dirty = asyncio.Event()
        self.service_records: Informer[ServiceRecord] = Informer(
            "services", store.services, ServiceRecord.from_wire, on_change=lambda *_: self.services_dirty.set(),
            on_damaged=self._damaged, reconnects=reconnects, resync=RELIST_INTERVAL,
        )
        self.node_records: Informer[NodeRegistration] = Informer(
            "nodes", store.nodes, NodeRegistration.from_wire, on_change=lambda *_: self.nodes_dirty.set(),
            on_damaged=self._damaged, reconnects=reconnects, resync=RELIST_INTERVAL,
        )
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
        # The node's own signing key: kept under the data dir when there is one (a restart keeps its identity)
        identity = NodeKey.load_or_create(self.cfg.data_dir) if self.cfg.data_dir else NodeKey.generate()
        gossip = GossipNode(self.cfg.node, self.cfg.address, key, port=0, config=GOSSIP_CONFIG, identity=identity)
        gossip.on_change(self._rebuild_backends)
        port = await gossip.start()
        self.gossip = gossip
        self.announcer.publish = gossip.set_local_endpoints
        self.announcer.announce()  # statuses that came before the gossip was up
        self.proxy = NodeProxy(self.cfg.address, self.resolve, strategy=self.strategy)
        if self.registry is not None:
            with contextlib.suppress(Exception):
                self.registry.register(DiscoveryCollector(self))
        self.sup.start("informer-services", self.service_records.run)
        self.sup.start("informer-nodes", self.node_records.run)
        self.sup.start("discovery-services", lambda: apply_on_change(self.services_dirty, self._apply_services))
        self.sup.start("discovery-nodes", lambda: apply_on_change(self.nodes_dirty, self._apply_nodes))
        try:  # the first listing before the node registers (a NATS hiccup: the loops above catch up)
            async with asyncio.timeout(5):
                await asyncio.gather(self.service_records.ready.wait(), self.node_records.ready.wait())
            await self._apply_services()
            await self._apply_nodes()
        except TimeoutError:
            self.log.warning("first read of services/nodes timed out")
        await self._hear_a_peer(gossip)
        self._sub = await self.nc.subscribe(self.names.endpoints, queue="agents", cb=self._on_endpoints)
        self.log.info(
            "discovery started",
            gossip_port=port,
            dns_port=self.dns.port if self.dns is not None else None,
            services=self.services,
            strategy=self.strategy,
        )
        return port

    @property
    def public_key_hex(self) -> str:
        """The gossip public key for the registration ("" before ``start``)."""
        return self.gossip.identity.public_hex if self.gossip is not None else ""

    async def _hear_a_peer(self, gossip: GossipNode) -> None:
        """Wait (≤ PEER_WAIT) until the gossip knows a live peer, when there are peers to know: before that the
        proxy has no endpoint but the node's own, and a node reported ready would fail its proxy's requests."""
        if not self.seeds:
            return
        heard = asyncio.Event()

        def check() -> None:
            if not heard.is_set() and any(m.name != self.cfg.node and m.status in UP for m in gossip.members()):
                heard.set()

        gossip.on_change(check)
        check()
        try:
            async with asyncio.timeout(PEER_WAIT):
                await heard.wait()
        except TimeoutError:
            self.log.warning("no gossip peer heard before registering", seeds=[n for n, _, _ in self.seeds])

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
        # Not validated again: the names are built from service names (always valid), and what the driver gets
        # never travels (``model_copy`` drops the copied spec's cached JSON form).
        return a.model_copy(update={"spec": a.spec.model_copy(update={"env": {**extra, **spec_env(a.spec)}})})

    # --- KV: services and nodes --------------------------------------------------------------------

    def _damaged(self, damage: Damage) -> None:
        self.bad_records += 1

    async def _apply_services(self) -> None:
        records = {k: rec for k, (rec, _) in self.service_records.items.items()}
        services = services_of(records)
        self.dns_names = lookup_of(records)
        if self.proxy is None or self._stopped:
            return
        if services != self.services or self.proxy.errors():
            if services != self.services:
                self.log.info("proxied services", services=services)
            self.services = services
            await self.proxy.set_services(services)

    async def _apply_nodes(self) -> None:
        records = {k: reg for k, (reg, _) in self.node_records.items.items()}
        seeds = seeds_of(records, self.cfg.node)
        self.seeds = seeds
        if self.gossip is not None and not self._stopped:
            self.gossip.trust(gossip_keys_of(records))  # before the seeds: their first datagrams verify
            if seeds:
                self.gossip.join(seeds)
