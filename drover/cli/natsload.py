"""Importing heavy third-party packages the lean way, for the CLI and for the daemons' start.

``nats.aio.transport`` tries ``import aiohttp`` (installed here for aiodocker) only to offer ``ws://``
servers; that one import costs about a quarter of a second, more than the rest of a ``drover get``.
The CLI talks ``nats://``/``tls://``, so while nats-py is first imported ``aiohttp`` is made unimportable
(``sys.modules[name] = None`` makes ``import`` raise ImportError, which nats-py handles by disabling
websockets); the block is lifted right after, so anything else in the process can still import aiohttp.
A ``ws://`` URL imports nats-py normally.

``load_daemon`` does the same for ``drover agent`` and ``drover controller``, whose start is on the clock
(an agent restarted by ``drover up`` must heartbeat again within the node grace, imports included), and
keeps out one more optional import of that path that a daemon never uses: structlog's ``rich``
pretty-printing (about a tenth of the agent's imports; daemons log JSON lines).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from types import ModuleType

_BLOCKED = ("aiohttp", "multidict")


@contextlib.contextmanager
def unimportable(*names: str) -> Iterator[None]:
    """While inside, ``import NAME`` raises ImportError for each of ``names`` not imported yet."""
    blocked = [name for name in names if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def load(url: str = "") -> ModuleType:
    """The ``nats`` package, imported without aiohttp unless ``url`` (one URL or a comma-separated list) needs
    websockets."""
    if "nats" in sys.modules or any(u.strip().startswith(("ws://", "wss://")) for u in url.split(",")):
        import nats

        return nats
    with unimportable(*_BLOCKED):
        import nats
    return nats


def load_daemon(url: str) -> None:
    """Before a daemon imports its own modules: nats-py as ``load`` and structlog without ``rich``. What a
    process imports first decides what it pays, so this comes first."""
    with unimportable("rich"):
        import structlog  # noqa: F401  (its dev module takes rich when importable: a JSON-logging daemon never uses it)
    load(url)
