"""The per-node proxy: listens on every service's ``expose`` port and forwards each TCP connection
to a ready endpoint anywhere in the cluster (round-robin or least-connections), retrying a failed
attempt on another endpoint.

    proxy = NodeProxy("10.0.0.5", resolve)       # resolve(service) -> the ready Backends, now
    await proxy.set_services({"web": 8080})     # open/close listeners to match
    proxy.errors(); proxy.stats["web"].connections
    await proxy.close()

The library never installs uvloop; a process that wants it calls ``uvloop.install()`` first.
"""

from drover.agent.proxy.balancer import (
    LEAST_CONNECTIONS,
    ROUND_ROBIN,
    STRATEGIES,
    Backend,
    Balancer,
    LeastConnections,
    RoundRobin,
    make_balancer,
    pick_least_connections,
    pick_round_robin,
)
from drover.agent.proxy.relay import MAX_REPLAY
from drover.agent.proxy.route import ProxyStats
from drover.agent.proxy.server import NodeProxy, ServiceProxy

__all__ = [
    "LEAST_CONNECTIONS",
    "MAX_REPLAY",
    "ROUND_ROBIN",
    "STRATEGIES",
    "Backend",
    "Balancer",
    "LeastConnections",
    "NodeProxy",
    "ProxyStats",
    "RoundRobin",
    "ServiceProxy",
    "make_balancer",
    "pick_least_connections",
    "pick_round_robin",
]
