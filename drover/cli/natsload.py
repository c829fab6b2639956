"""Importing nats-py for the short-lived CLI process without its optional websocket transport.

``nats.aio.transport`` tries ``import aiohttp`` (installed here for aiodocker) only to offer ``ws://``
servers; that one import costs about a quarter of a second, more than the rest of a ``drover get``.
The CLI talks ``nats://``/``tls://``, so while nats-py is first imported ``aiohttp`` is made unimportable
(``sys.modules[name] = None`` makes ``import`` raise ImportError, which nats-py handles by disabling
websockets); the block is lifted right after, so anything else in the process can still import aiohttp.
A ``ws://`` URL imports nats-py normally.
"""

from __future__ import annotations

import sys
from types import ModuleType

_BLOCKED = ("aiohttp", "multidict")


def load(url: str = "") -> ModuleType:
    """The ``nats`` package, imported without aiohttp unless ``url`` needs websockets."""
    if "nats" in sys.modules or url.startswith(("ws://", "wss://")):
        import nats

        return nats
    blocked = [name for name in _BLOCKED if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import nats
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
    return nats
