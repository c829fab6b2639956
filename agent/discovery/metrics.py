"""Prometheus view of the gossip, DNS and proxy counters of a node's discovery (read at scrape time)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drover.agent.discovery.component import Discovery


class DiscoveryCollector:
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
            e.add_metric([node], sum(len(b) for b in list(self.d.backends.values())))
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
