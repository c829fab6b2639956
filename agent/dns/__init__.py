"""A minimal authoritative DNS responder for ``<service>.drover`` (see ``server``), over a small pure
wire codec (``codec``). Each agent runs one when ``AgentConfig.dns_port`` is set."""

from drover.agent.dns.codec import DnsError
from drover.agent.dns.server import DnsResponder, Lookup, lookup_of, lookup_table

__all__ = ["DnsError", "DnsResponder", "Lookup", "lookup_of", "lookup_table"]
