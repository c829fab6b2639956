"""NATS server lists as users write them: ``nats://a:4222,nats://b:4222`` (``--nats``, ``DROVER_NATS``, the
context file's ``nats``). Pure and dependency-free, so the CLI can use it without importing nats-py.

``split_urls`` gives the list nats-py takes as ``servers=[...]``: it tries them in turn, so a first server
that is down does not keep a client or daemon out of a cluster whose other servers are up.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["join_urls", "normalize_one", "split_urls"]


def normalize_one(url: str) -> str:
    """``host:port`` or ``host`` → ``nats://host:port`` (4222 by default); full URLs are kept."""
    url = url.strip()
    if "://" not in url:
        url = f"nats://{url}"
        if url.count(":") == 1:
            url += ":4222"
    return url


def split_urls(urls: str | Sequence[str]) -> list[str]:
    """``"a:4222, nats://b:4222"`` → ``["nats://a:4222", "nats://b:4222"]``; ValueError if none is given."""
    parts = urls.split(",") if isinstance(urls, str) else [p for u in urls for p in u.split(",")]
    servers = list(dict.fromkeys(normalize_one(p) for p in parts if p.strip()))
    if not servers:
        raise ValueError("no NATS URL given")
    return servers


def join_urls(urls: str | Sequence[str]) -> str:
    """The normalised, comma-separated form (what messages show and the context file stores)."""
    return ",".join(split_urls(urls))
