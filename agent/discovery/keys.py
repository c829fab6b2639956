"""Pure discovery helpers: proxy keys and strategies, the proxy map and gossip seeds from bucket snapshots,
the service env of new containers, the endpoints a node announces, proxy backends from the gossip table."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, TypeVar

from drover.agent.drivers.base import exposed_ports as spec_exposed_ports
from drover.agent.gossip import Endpoint
from drover.agent.gossip.identity import parse_public
from drover.agent.proxy import LEAST_CONNECTIONS, ROUND_ROBIN, Backend
from drover.shared.errors import WireError
from drover.shared.manifest import ServiceSpec
from drover.shared.models import ContainerState, ContainerStatus, NodeRegistration, ServiceRecord

_STRATEGIES = {
    "round-robin": ROUND_ROBIN,
    "rr": ROUND_ROBIN,
    "least-conn": LEAST_CONNECTIONS,
    "least-connections": LEAST_CONNECTIONS,
}
_ENV_UNSAFE = re.compile(r"[^A-Za-z0-9]")
T = TypeVar("T")


def proxy_strategy(name: str) -> str:
    """The proxy's strategy name for ``AgentConfig.proxy_strategy`` (``least-conn`` is accepted)."""
    try:
        return _STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown proxy strategy {name!r}: expected round-robin or least-conn") from None


def proxy_key(service: str, index: int, port_name: str) -> str:
    return service if index == 0 else f"{service}:{port_name}"


def exposed_ports(service: str, spec: ServiceSpec) -> dict[str, int]:
    """{proxy key: expose port} of one service spec (see the module doc for the keys)."""
    return {proxy_key(service, i, name): expose for i, name, expose in spec_exposed_ports(spec)}


def services_of(records: Mapping[str, ServiceRecord]) -> dict[str, int]:
    """The proxy map of every live service (records by bucket key)."""
    out: dict[str, int] = {}
    for key, rec in sorted(records.items()):
        if not rec.deleted:
            out.update(exposed_ports(rec.name or key, rec.spec))
    return out


def seeds_of(records: Mapping[str, NodeRegistration], me: str) -> list[tuple[str, str, int]]:
    """(name, address, gossip port) of every other registered node that has a gossip port."""
    out: list[tuple[str, str, int]] = []
    for key, reg in sorted(records.items()):
        # The key, not the body: an agent's credentials may write only its own key, so the key is the node
        # the server vouched for; a body naming another node must not become a seed under that name.
        name = key
        if name != me and reg.gossip_port > 0:
            out.append((name, reg.address, reg.gossip_port))
    return out


def gossip_keys_of(records: Mapping[str, NodeRegistration]) -> dict[str, bytes]:
    """Every registered node's gossip public key, by bucket key: the key directory gossip verifies against.

    By key, like the seeds: only a node's own credentials may write its registration, so a body cannot
    publish a key under another node's name. Records without a well-formed key are left out."""
    out: dict[str, bytes] = {}
    for key, reg in records.items():
        public = parse_public(reg.gossip_pubkey)
        if public is not None:
            out[key] = public
    return out


def _decoded(records: Mapping[str, bytes], decode: Callable[[bytes], T]) -> tuple[dict[str, T], int]:
    out: dict[str, T] = {}
    bad = 0
    for key, data in records.items():
        try:
            out[key] = decode(data)
        except WireError:
            bad += 1
    return out, bad


def services_from_records(records: Mapping[str, bytes]) -> tuple[dict[str, int], int]:
    """The proxy map of every live service in a services-bucket snapshot, and how many entries were bad."""
    decoded, bad = _decoded(records, ServiceRecord.from_wire)
    return services_of(decoded), bad


def seeds_from_records(records: Mapping[str, bytes], me: str) -> list[tuple[str, str, int]]:
    """``seeds_of`` a nodes-bucket snapshot (undecodable entries left out)."""
    return seeds_of(_decoded(records, NodeRegistration.from_wire)[0], me)


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
