"""Which cluster a client command talks to.

``--nats URL``, else env ``DROVER_NATS``, else ``$DROVER_HOME/context.json`` ``{"nats": ...}``, else
``nats://127.0.0.1:4222``. Credentials and CA: ``--creds``/``--ca``, else env ``DROVER_CREDS``/``DROVER_CA``,
else the context's ``"creds"``/``"ca"``, else none (a plain, anonymous connection).
The cluster name: ``--cluster``, else env ``DROVER_CLUSTER``, else the context's
``"cluster"``, else ``default``. ``DROVER_HOME`` defaults to ``~/.drover``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_NATS = "nats://127.0.0.1:4222"
DEFAULT_CLUSTER = "default"


@dataclass(frozen=True)
class Target:
    nats: str
    cluster: str
    nats_from: str  # "flag" | "env" | "context" | "default": where the URL came from (for messages)
    creds: str | None = None  # NATS credentials file: --creds, $DROVER_CREDS, the context's "creds"
    ca: str | None = None  # the cluster CA's PEM (TLS): --ca, $DROVER_CA, the context's "ca"


def drover_home() -> Path:
    return Path(os.environ.get("DROVER_HOME") or "~/.drover").expanduser()


def context_path() -> Path:
    return drover_home() / "context.json"


def load_context() -> dict[str, Any]:
    """The context file's content; an absent or unreadable file is an empty context."""
    try:
        data = json.loads(context_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_context(nats_url: str, cluster: str, *, creds: str | None = None, ca: str | None = None) -> Path:
    """Write ``{"nats": url, "cluster": name, "creds": file, "ca": file}`` atomically (what ``drover up``
    leaves for the clients; ``creds``/``ca`` only when given)."""
    path = context_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    body: dict[str, str] = {"nats": nats_url, "cluster": cluster}
    if creds:
        body["creds"] = creds
    if ca:
        body["ca"] = ca
    tmp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def normalize_url(url: str) -> str:
    """``host:port`` or ``host`` → ``nats://host:port`` (4222 by default)."""
    url = url.strip()
    if "://" not in url:
        url = f"nats://{url}"
        if url.count(":") == 1:
            url += ":4222"
    return url


def resolve(
    nats_opt: str | None = None, cluster_opt: str | None = None, creds_opt: str | None = None, ca_opt: str | None = None
) -> Target:
    ctx: dict[str, Any] | None = None

    def context() -> dict[str, Any]:
        nonlocal ctx
        if ctx is None:
            ctx = load_context()
        return ctx

    if nats_opt:
        url, source = nats_opt, "flag"
    elif os.environ.get("DROVER_NATS"):
        url, source = os.environ["DROVER_NATS"], "env"
    elif isinstance(context().get("nats"), str) and context()["nats"]:
        url, source = context()["nats"], "context"
    else:
        url, source = DEFAULT_NATS, "default"

    if cluster_opt:
        cluster = cluster_opt
    elif os.environ.get("DROVER_CLUSTER"):
        cluster = os.environ["DROVER_CLUSTER"]
    elif isinstance(context().get("cluster"), str) and context()["cluster"]:
        cluster = context()["cluster"]
    else:
        cluster = DEFAULT_CLUSTER

    def pick(opt: str | None, env: str, key: str) -> str | None:
        if opt:
            return opt
        if os.environ.get(env):
            return os.environ[env]
        value = context().get(key)
        return value if isinstance(value, str) and value else None

    return Target(
        nats=normalize_url(url), cluster=cluster, nats_from=source,
        creds=pick(creds_opt, "DROVER_CREDS", "creds"), ca=pick(ca_opt, "DROVER_CA", "ca"),
    )
