"""The event loop daemons run on: uvloop when it is installed (it roughly halves the per-connection cost of
the per-node proxy's accept/connect path), else asyncio's own."""

from __future__ import annotations


def install_fast_loop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    uvloop.install()
    return "uvloop"
