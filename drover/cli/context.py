"""Which cluster a client command talks to.

``--nats URL``, else env ``DROVER_NATS``, else ``$DROVER_HOME/context.json`` ``{"nats": ...}``, else
``nats://127.0.0.1:4222``. The cluster name: ``--cluster``, else env ``DROVER_CLUSTER``, else the context's
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


def write_context(nats_url: str, cluster: str) -> Path:
    """Write ``{"nats": url, "cluster": name}`` atomically (what ``drover up`` leaves for the clients)."""
    path = context_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"nats": nats_url, "cluster": cluster}, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def normalize_url(url: str) -> str:
    """``host:port`` or ``host`` → ``nats://host:port`` (4222 by default); a comma-separated list (the
    servers of one cluster) is normalized element by element."""
    if "," in url:
        return ",".join(normalize_url(u) for u in url.split(",") if u.strip())
    url = url.strip()
    if "://" not in url:
        url = f"nats://{url}"
        if url.count(":") == 1:
            url += ":4222"
    return url


def resolve(nats_opt: str | None = None, cluster_opt: str | None = None) -> Target:
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
    return Target(nats=normalize_url(url), cluster=cluster, nats_from=source)
