"""Discovery inside the agent: gossip membership and endpoints, the per-node proxy, the endpoints API.

One module per concern: ``keys`` (pure helpers: proxy keys, the proxy map, seeds, env, local endpoints),
``announce`` (the endpoints this node announces, withdrawal before a stop), ``kvwatch`` (following the
services and nodes buckets), ``api`` (the endpoints API), ``metrics`` (Prometheus view) and ``component``
(``Discovery``, wiring them together with narrow dependencies: config, NATS, store, names, supervisor).

``Discovery`` is owned by the ``Agent`` and started right after the KV store is open, before the node
registers (its gossip port, returned by ``start``, goes into the registration):

* **Gossip.** A ``GossipNode`` on ``(cfg.address, random UDP port)`` keyed with the cluster key
  (``cfg.gossip_key``, else ``shared.cluster_key``). Seeds are the other nodes' ``(name, address,
  gossip_port)`` from the nodes bucket, followed by a watch that is re-created (a full re-list) every
  ``RELIST_INTERVAL`` seconds, so a NATS restart or a missed update heals on its own.
* **Local endpoints.** Rebuilt from the agent's container statuses (``on_statuses``, a status listener):
  every ready, running container with a host port is an ``Endpoint(service, cfg.address, host_port, node, replica id,
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

from drover.agent.discovery.announce import DRAIN_DELAY, WITHDRAWN_TTL
from drover.agent.discovery.component import GOSSIP_CONFIG, Discovery
from drover.agent.discovery.keys import (
    backends_by_service,
    endpoint_dict,
    env_name,
    exposed_ports,
    local_endpoints,
    proxy_key,
    proxy_strategy,
    seeds_from_records,
    service_env,
    services_from_records,
)
from drover.agent.discovery.kvwatch import RELIST_INTERVAL

__all__ = [
    "DRAIN_DELAY",
    "GOSSIP_CONFIG",
    "RELIST_INTERVAL",
    "WITHDRAWN_TTL",
    "Discovery",
    "backends_by_service",
    "endpoint_dict",
    "env_name",
    "exposed_ports",
    "local_endpoints",
    "proxy_key",
    "proxy_strategy",
    "seeds_from_records",
    "service_env",
    "services_from_records",
]
