"""What each role may publish and subscribe to on the bus (enforced by nats-server through the user JWT).

A KV put is a publish to ``$KV.<bucket>.<key>``; a KV read goes through the JetStream API: ``STREAM.INFO``
of the bucket's stream, a direct get ``$JS.API.DIRECT.GET.KV_<bucket>.$KV.<bucket>.<key>`` and, for
watches, an ordered consumer (``CONSUMER.CREATE.KV_<bucket>``, the filter in the body). So writes are
scoped to single keys, reads to whole buckets, except an agent's reads of its own assignment: those go through
the subjects that name the key (``shared.ownkey``), so an agent reads its own assignment and no other.
Destructive API verbs (stream delete/purge/update) are granted to the controller only.
Replies go to ``_INBOX.…`` subjects.

NATS permissions are per subject token, so an agent credential for a fleet prefix (``P-*``) cannot be bound
to ``P-…`` names on the usual subjects: a fleet speaks on subjects where its prefix is a token (``fleet``).
"""

from __future__ import annotations

from drover.shared.security_jwt import Permissions
from drover.shared.subjects import Names, fleet_prefix

ROLES = ("admin", "controller", "agent", "client", "client-read-only")

# Controller API verbs that only read (the read-only client's set). Unknown verbs are denied.
READ_VERBS = (
    "get_services", "get_containers", "get_nodes", "describe_service", "describe_node", "events",
    "rollout_status", "rollout_history", "leader", "endpoints", "preview", "diff",
)

INBOX = "_INBOX.>"
# Keep-alives of a ``logs -f`` stream (``<the client's inbox>.alive``), which the agent listens to.
STREAM_ALIVE = "_INBOX.*.*.alive"


def own_inbox(user_public: str) -> str:
    """The inbox prefix of one user: its replies and streams arrive under it, and only it may subscribe there
    (``shared.security.connect_options`` makes nats-py use it)."""
    return f"_INBOX.{user_public}"


def _buckets(n: Names) -> dict[str, str]:
    return {
        "services": n.services_bucket, "assign": n.assignments_bucket, "nodes": n.nodes_bucket,
        "nodectl": n.nodectl_bucket, "leader": n.leader_bucket, "config": n.config_bucket,
    }


def _read_bucket(bucket: str) -> list[str]:
    """Read (get, history, keys, watch) every key of a bucket."""
    s = f"KV_{bucket}"
    return [
        f"$JS.API.STREAM.INFO.{s}", f"$JS.API.STREAM.MSG.GET.{s}", f"$JS.API.DIRECT.GET.{s}",
        f"$JS.API.DIRECT.GET.{s}.>", f"$JS.API.CONSUMER.CREATE.{s}", f"$JS.API.CONSUMER.CREATE.{s}.>",
        f"$JS.API.CONSUMER.DELETE.{s}.>", f"$JS.API.CONSUMER.INFO.{s}.>",
    ]


def own_key_reads(bucket: str, key: str) -> list[str]:
    """Read (direct get of the last value, watch) one key of a bucket and no other: the subjects name the
    key (``shared.ownkey``); the stream info (the bucket's size and subjects, no values) opens the bucket."""
    # Imported here: ownkey holds the nats-py reader too, and the CLI loads this module for every secured
    # command (own_inbox), where nats-py must come in only through drover.cli.natsload (without aiohttp).
    from drover.shared import ownkey

    return [f"$JS.API.STREAM.INFO.KV_{bucket}", ownkey.direct_get_subject(bucket, key),
            ownkey.consumer_create_subject(bucket, key)]


def _js_common(n: Names) -> list[str]:
    # Account info, the events stream's info (every component checks it exists), and flow-control replies
    # of ordered consumers (KV watches).
    return ["$JS.API.INFO", f"$JS.API.STREAM.INFO.{n.events_stream}", "$JS.FC.>", INBOX]


def controller(cluster: str) -> Permissions:
    n = Names(cluster)
    b = _buckets(n)
    # Secrets (encrypted) and the replies of write requests are the controller's only; no other role reads
    # or writes those buckets.
    kv = [*b.values(), n.secrets_bucket, n.requests_bucket]
    pub = [f"drover.{cluster}.>", *(f"$KV.{x}.>" for x in kv), "$JS.API.>", "$JS.ACK.>", *_js_common(n)]
    return Permissions(pub=pub, sub=[f"drover.{cluster}.>", INBOX], tags=["drover-role:controller"])


def agent(cluster: str, node: str) -> Permissions:
    """``node`` is one node name, or ``P-*`` for a fleet (``fleet``)."""
    prefix = fleet_prefix(node)
    if prefix is not None:
        return fleet(cluster, prefix)
    n = Names(cluster)
    b = _buckets(n)
    me = node
    pub = [
        n.heartbeat(me),
        f"$KV.{b['nodes']}.{me}",
        n.secret_read(me),  # a secret one of its replicas uses, asked as itself (the controller checks)
        n.node_event(me, "*"),  # events about itself only (readers check the body names this node)
        *_js_common(n),
        *own_key_reads(b["assign"], node),  # its own assignment, no other (shared/ownkey.py)
        *_read_bucket(b["nodes"]),
        *_read_bucket(b["services"]),
        *_read_bucket(b["nodectl"]),
        *_read_bucket(b["config"]),
    ]
    sub = [n.agent_api(me, ">"), n.endpoints, INBOX, STREAM_ALIVE]
    return Permissions(pub=pub, sub=sub, tags=["drover-role:agent"])


def fleet(cluster: str, prefix: str) -> Permissions:
    """A hollow fleet's nodes ``<prefix>-…`` (``drover agent --driver sim --count N --node-prefix P``).

    Heartbeats and registrations go on the fleet subjects (``Names.fleet``) where the prefix is a token the
    server binds these credentials to; the controllers take only nodes starting with ``<prefix>-`` from them
    and write the registrations into the nodes bucket themselves. A fleet may read the whole assign bucket
    (a permission cannot say "keys starting with P-"; it watches only its own keys, ``shared/keyswatch.py``),
    only opens the other buckets (stream info: no gossip key), asks no secrets and only hears ``die`` requests
    for its own nodes."""
    n = Names(cluster)
    b = _buckets(n)
    opened = [f"$JS.API.STREAM.INFO.KV_{b[x]}" for x in ("services", "nodes", "nodectl", "config")]
    pub = [
        n.fleet(prefix, "hb", "*"), n.fleet(prefix, "register", "*"), n.fleet_event(prefix, "*", "*"),
        *_js_common(n),
        *_read_bucket(b["assign"]), *opened,
    ]
    sub = [n.fleet(prefix, "die", "*"), INBOX]
    return Permissions(pub=pub, sub=sub, tags=["drover-role:agent", "drover-fleet"])


def client(cluster: str, *, read_only: bool) -> Permissions:
    n = Names(cluster)
    b = _buckets(n)
    verbs = [n.api(v) for v in READ_VERBS] if read_only else [n.api("*")]
    # Logs (and logs -f keep-alives to the client's own inbox), endpoints through any agent.
    pub = [*verbs, n.agent_api("*", "logs"), n.endpoints, *_js_common(n)]
    for bucket in ("services", "nodes", "nodectl", "assign"):
        pub += _read_bucket(b[bucket])
    sub = [f"{n.events_prefix}.>", INBOX]
    role = "client-read-only" if read_only else "client"
    return Permissions(pub=pub, sub=sub, tags=[f"drover-role:{role}"])


def admin() -> Permissions:
    return Permissions(pub=None, sub=None, tags=["drover-role:admin"])


def for_role(role: str, cluster: str, node: str | None = None) -> Permissions:
    if role == "admin":
        return admin()
    if role == "controller":
        return controller(cluster)
    if role == "agent":
        if not node:
            raise ValueError("an agent credential needs a node name")
        return agent(cluster, node)
    if role in ("client", "client-read-only"):
        return client(cluster, read_only=role == "client-read-only")
    raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
