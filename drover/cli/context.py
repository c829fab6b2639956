"""Which cluster a client command talks to, and the named contexts that remember clusters.

``$DROVER_HOME/context.json`` is what ``drover up`` writes; it is the context named ``default``.
Named contexts (``drover context add``) live beside it in ``contexts.json``:
``{"current": NAME, "contexts": {NAME: {"nats": ..., "creds": ..., "ca": ..., "cluster": ...}}}``.
The context in use: ``--context NAME``, else env ``DROVER_CONTEXT``, else ``contexts.json``'s ``current``,
else ``default``. This module is the one place that reads them (``load_context``).

The NATS URL: ``--nats URL``, else an explicit ``--context``'s, else env ``DROVER_NATS``, else the context's
``"nats"``, else ``nats://127.0.0.1:4222``. The cluster name: ``--cluster``, else env ``DROVER_CLUSTER``, else
the context's ``"cluster"``, else ``default``. Credentials and CA the same way: ``--creds``/``--ca``, else an
explicit ``--context``'s, else env ``DROVER_CREDS``/``DROVER_CA``, else the context's ``"creds"``/``"ca"``, else
none (a plain, anonymous connection). ``DROVER_HOME`` defaults to ``~/.drover``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drover.shared.natsurls import join_urls, split_urls

DEFAULT_NATS = "nats://127.0.0.1:4222"
DEFAULT_CLUSTER = "default"
#: the name of the context ``drover up`` writes (``context.json``)
DEFAULT_CONTEXT = "default"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


class ContextError(ValueError):
    """A context that does not exist or cannot be written (bad input: exit 2)."""


@dataclass(frozen=True)
class Target:
    nats: str  # one URL or a comma-separated list, normalised
    cluster: str
    nats_from: str  # "flag" | "env" | "context" | "default": where the URL came from (for messages)
    creds: str | None = None  # NATS credentials file: --creds, $DROVER_CREDS, the context's "creds"
    ca: str | None = None  # the cluster CA's PEM (TLS): --ca, $DROVER_CA, the context's "ca"

    @property
    def servers(self) -> list[str]:
        """The URLs to try, in order (nats-py's ``servers=``)."""
        return split_urls(self.nats)


def drover_home() -> Path:
    return Path(os.environ.get("DROVER_HOME") or "~/.drover").expanduser()


def context_path() -> Path:
    return drover_home() / "context.json"


def contexts_path() -> Path:
    return drover_home() / "contexts.json"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_contexts() -> dict[str, Any]:
    """``contexts.json`` as ``{"current": str | None, "contexts": {name: dict}}`` (empty when absent)."""
    data = _read_json(contexts_path())
    contexts = data.get("contexts")
    current = data.get("current")
    return {
        "current": current if isinstance(current, str) else None,
        "contexts": {k: v for k, v in contexts.items() if isinstance(v, dict)} if isinstance(contexts, dict) else {},
    }


def current_name(explicit: str | None = None) -> str:
    """The name of the context in use: ``explicit``, else ``$DROVER_CONTEXT``, else the stored current one."""
    return explicit or os.environ.get("DROVER_CONTEXT") or read_contexts()["current"] or DEFAULT_CONTEXT


def all_contexts() -> dict[str, dict[str, Any]]:
    """Every context by name: ``default`` (``context.json``, when it exists) and the named ones."""
    out: dict[str, dict[str, Any]] = {}
    if context_path().exists():
        out[DEFAULT_CONTEXT] = _read_json(context_path())
    out.update(read_contexts()["contexts"])
    return out


def load_context(name: str | None = None) -> dict[str, Any]:
    """The content of the context in use (or of ``name``); ``default`` absent or unreadable is empty.

    A named context that does not exist raises ``ContextError``.
    """
    chosen = current_name(name)
    if chosen == DEFAULT_CONTEXT:
        return _read_json(context_path())
    contexts = read_contexts()["contexts"]
    if chosen not in contexts:
        raise ContextError(f"context {chosen!r} not found (see 'drover context list')")
    return dict(contexts[chosen])


def write_context(nats_url: str, cluster: str, *, creds: str | None = None, ca: str | None = None) -> Path:
    """Write ``{"nats": url, "cluster": name, "creds": file, "ca": file}`` atomically (what ``drover up``
    leaves for the clients; ``creds``/``ca`` only when given).

    It also makes ``default`` the current context again: the cluster just started is the one the user
    means next.
    """
    path = context_path()
    body: dict[str, str] = {"nats": nats_url, "cluster": cluster}
    if creds:
        body["creds"] = creds
    if ca:
        body["ca"] = ca
    _write_json(path, body)
    stored = read_contexts()
    if stored["current"] not in (None, DEFAULT_CONTEXT):
        _write_json(contexts_path(), {**stored, "current": None})
    return path


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ContextError(f"invalid context name {name!r}: letters, digits, '.', '_' and '-', at most 63")


def add_context(name: str, entry: dict[str, Any]) -> bool:
    """Store (or replace) a named context without switching to it; True when it is new."""
    check_name(name)
    if name == DEFAULT_CONTEXT:
        raise ContextError(f"{DEFAULT_CONTEXT!r} is the context 'drover up' writes: choose another name")
    stored = read_contexts()
    new = name not in stored["contexts"]
    stored["contexts"][name] = entry
    _write_json(contexts_path(), stored)
    return new


def use_context(name: str) -> None:
    if name not in all_contexts() and name != DEFAULT_CONTEXT:
        raise ContextError(f"context {name!r} not found (see 'drover context list')")
    stored = read_contexts()
    _write_json(contexts_path(), {**stored, "current": None if name == DEFAULT_CONTEXT else name})


def delete_context(name: str) -> None:
    stored = read_contexts()
    if name == DEFAULT_CONTEXT:
        raise ContextError(f"{DEFAULT_CONTEXT!r} is the context 'drover up' writes and cannot be deleted")
    if name not in stored["contexts"]:
        raise ContextError(f"context {name!r} not found (see 'drover context list')")
    del stored["contexts"][name]
    if stored["current"] == name:
        stored["current"] = None
    _write_json(contexts_path(), stored)


def normalize_url(url: str) -> str:
    """``host:port`` or ``host`` → ``nats://host:port`` (4222 by default); a comma-separated list is
    normalised URL by URL. ValueError when no URL is given."""
    return join_urls(url)


def resolve(
    nats_opt: str | None = None,
    cluster_opt: str | None = None,
    context_opt: str | None = None,
    *,
    creds_opt: str | None = None,
    ca_opt: str | None = None,
) -> Target:
    ctx: dict[str, Any] | None = None

    def context() -> dict[str, Any]:
        nonlocal ctx
        if ctx is None:
            ctx = load_context(context_opt)
        return ctx

    if nats_opt:
        url, source = nats_opt, "flag"
    elif context_opt and isinstance(context().get("nats"), str) and context()["nats"]:
        url, source = context()["nats"], "context"
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
        value = context().get(key)
        from_context = value if isinstance(value, str) and value else None
        if opt:
            return opt
        if context_opt and from_context:
            return from_context
        return os.environ.get(env) or from_context

    try:
        nats = normalize_url(url)
    except ValueError:
        where = {"flag": "--nats", "env": "DROVER_NATS", "context": "the context's nats"}.get(source, source)
        raise ContextError(f"{where}: give at least one NATS URL") from None
    return Target(
        nats=nats, cluster=cluster, nats_from=source,
        creds=pick(creds_opt, "DROVER_CREDS", "creds"), ca=pick(ca_opt, "DROVER_CA", "ca"),
    )
