"""Paged listings: continuation pages within the TTL come from the rows of the first page."""

from __future__ import annotations

from typing import Any

from drover.controller.views import ListingCache, page


def test_continuation_pages_reuse_the_first_pages_rows() -> None:
    builds: list[int] = []

    def build() -> list[dict[str, Any]]:
        builds.append(1)
        return [{"name": f"n{i:03d}", "build": len(builds)} for i in range(10)]

    cache = ListingCache(ttl=2.0)
    first = page("nodes", cache.rows(("nodes", None), None, 100.0, build), None, 4)
    second = page("nodes", cache.rows(("nodes", None), ["n003"], 101.0, build), ["n003"], 4)
    assert [r["name"] for r in first + second] == [f"n{i:03d}" for i in range(8)] and len(builds) == 1
    cache.rows(("nodes", None), ["n007"], 103.5, build)  # too old: rebuilt
    cache.rows(("nodes", None), None, 103.6, build)  # a new listing always starts fresh
    assert len(builds) == 3


def test_the_cache_forgets_old_listings() -> None:
    cache = ListingCache(keep=3)
    for i in range(10):
        cache.rows(("containers", f"s{i}"), None, float(i), list)
    assert len(cache._rows) == 3


def test_expired_listings_are_dropped() -> None:
    cache = ListingCache(ttl=2.0)
    cache.rows(("containers", None), None, 0.0, list)
    cache.rows(("nodes", None), None, 10.0, list)
    assert list(cache._rows) == [("nodes", None)]
