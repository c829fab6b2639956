"""Names of NATS subjects and JetStream KV buckets/streams, all scoped by cluster name.

Keeping every name in one module lets the controller, the agents and the CLI agree, and lets several clusters
(and parallel test runs) share one nats-server.
"""

from __future__ import annotations

import re

_CLUSTER_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_cluster(name: str) -> str:
    if not _CLUSTER_RE.match(name):
        raise ValueError(f"cluster name {name!r}: must match [A-Za-z0-9_-]{{1,64}}")
    return name


class Names:
    """All bus names of one cluster."""

    def __init__(self, cluster: str = "default"):
        self.cluster = check_cluster(cluster)
        c = cluster
        # JetStream KV buckets (file storage).
        self.services_bucket = f"drover_{c}_services"  # key: service name -> ServiceRecord
        self.assignments_bucket = f"drover_{c}_assign"  # key: node name -> Assignment
        self.nodes_bucket = f"drover_{c}_nodes"  # key: node name -> NodeRegistration (agent-owned)
        self.nodectl_bucket = f"drover_{c}_nodectl"  # node -> NodeControl (controller-owned)
        self.leader_bucket = f"drover_{c}_leader"
        self.config_bucket = f"drover_{c}_config"  # cluster-wide settings, e.g. the gossip key
        self.secrets_bucket = f"drover_{c}_secrets"  # key: secret name -> SecretRecord (encrypted; controller only)
        self.requests_bucket = f"drover_{c}_requests"  # key: request id -> reply of a write (controller only, TTL)
        # JetStream stream holding the cluster's events.
        self.events_stream = f"DROVER_{c}_EVENTS"
        self.events_prefix = f"drover.{c}.events"
        # Plain subjects.
        self.api_prefix = f"drover.{c}.api"
        self.heartbeat_prefix = f"drover.{c}.hb"

    def api(self, verb: str) -> str:
        return f"{self.api_prefix}.{verb}"

    def heartbeat(self, node: str) -> str:
        return f"{self.heartbeat_prefix}.{node}"

    def heartbeat_node(self, subject: str) -> str | None:
        """The node a heartbeat subject names (None if it is not one): ``…hb.<node>``, or a fleet's
        ``…fleet.<prefix>.hb.<prefix>-<n>`` (``fleet_node``)."""
        prefix = self.heartbeat_prefix + "."
        if not subject.startswith(prefix):
            return self.fleet_node(subject, "hb")
        node = subject[len(prefix):]
        return node if node and "." not in node else None

    # A hollow fleet's credentials ('P-*') cannot be bound to node names starting with 'P-' on the usual
    # subjects: NATS permissions match whole tokens. On these the prefix is a token of its own, which the
    # server binds the credentials to; the node is the next token, and whoever reads these subjects takes a
    # node only when it starts with '<prefix>-' (``fleet_node``).
    def fleet(self, prefix: str, kind: str, node: str) -> str:
        """``kind``: ``hb`` (heartbeats), ``register`` (registrations, relayed into the nodes bucket by the
        controllers) or ``die`` (a request that stops one hollow node)."""
        return f"drover.{self.cluster}.fleet.{prefix}.{kind}.{node}"

    def fleet_all(self, kind: str) -> str:
        return f"drover.{self.cluster}.fleet.*.{kind}.*"

    def fleet_node(self, subject: str, kind: str) -> str | None:
        """The node of a fleet subject of ``kind``, None unless it is one of that fleet's (``<prefix>-…``)."""
        head = f"drover.{self.cluster}.fleet."
        if not subject.startswith(head):
            return None
        parts = subject[len(head):].split(".")
        if len(parts) != 3 or parts[1] != kind or not parts[0] or not parts[2]:
            return None
        prefix, node = parts[0], parts[2]
        return node if node.startswith(prefix + "-") and len(node) > len(prefix) + 1 else None

    @property
    def heartbeat_all(self) -> str:
        return f"{self.heartbeat_prefix}.*"

    def secret_read(self, node: str) -> str:
        """Request/reply: an agent asks the controllers for a secret one of its replicas uses."""
        return f"drover.{self.cluster}.secrets.{node}"

    @property
    def secret_read_all(self) -> str:
        return f"drover.{self.cluster}.secrets.*"

    def agent_api(self, node: str, verb: str) -> str:
        return f"drover.{self.cluster}.agent.{node}.{verb}"

    @property
    def endpoints(self) -> str:
        """Request/reply to any agent (queue group ``agents``): the ready endpoints in the gossip table."""
        return f"drover.{self.cluster}.endpoints"

    def event(self, kind: str) -> str:
        """An event of the control plane (the controllers publish these: any node, or none, in the body)."""
        return f"{self.events_prefix}.{kind}"

    def node_event(self, node: str, kind: str) -> str:
        """An event an agent publishes about its own node: the server lets agent NODE publish only under
        ``….events.node.NODE``, and readers take only events whose body names that node (``event_binding``)."""
        return f"{self.events_prefix}.node.{node}.{kind}"

    def fleet_event(self, prefix: str, node: str, kind: str) -> str:
        """An event of a hollow fleet's node ``<prefix>-…`` (the prefix token binds the fleet's credentials)."""
        return f"{self.events_prefix}.fleet.{prefix}.{node}.{kind}"

    @property
    def events_all(self) -> str:
        return f"{self.events_prefix}.>"


def event_binding(subject: str) -> str | None:
    """The node an event on ``subject`` must name in its body: NODE for an agent's event
    (``drover.<c>.events.node.NODE.<kind>``) or for a fleet's (``….events.fleet.P.NODE.<kind>``, NODE being
    ``P-…``); None for a controller's (``drover.<c>.events.<kind>``: any node, or none). The cluster name holds
    no dots. A fleet subject naming a node outside its prefix binds to no node at all ("")."""
    tokens = subject.split(".")
    if len(tokens) >= 6 and tokens[3] == "node":
        return tokens[4]
    if len(tokens) >= 7 and tokens[3] == "fleet":
        return tokens[5] if tokens[5].startswith(f"{tokens[4]}-") else "\x00"
    return None


def fleet_prefix(pattern: str) -> str | None:
    """The prefix of a fleet credential's node pattern (``P-*`` -> ``P``); None for a single node."""
    if not pattern.endswith("*"):
        return None
    return pattern[:-1].rstrip("-") or None


INBOX_PREFIX = "_INBOX."


def is_inbox(subject: object) -> bool:
    """A concrete reply inbox (``_INBOX.…``, no wildcards): the only subjects an agent answers or streams to,
    so a request cannot make it publish (logs, …) onto another component's subject."""
    return (
        isinstance(subject, str)
        and subject.startswith(INBOX_PREFIX)
        and len(subject) > len(INBOX_PREFIX)
        and not any(c in subject for c in "*> \t\r\n")
        and ".." not in subject
        and not subject.endswith(".")
    )
