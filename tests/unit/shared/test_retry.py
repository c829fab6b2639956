"""``retry.retrying``: a repeatable operation done again on the listed failures, within a deadline."""

from __future__ import annotations

import asyncio

import pytest

from drover.shared.retry import Backoff, retrying


async def test_retried_on_listed_failures_until_it_succeeds() -> None:
    calls = 0

    async def op() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise TimeoutError
        return "done"

    assert await retrying(op, retry_on=(TimeoutError,), deadline=5.0, backoff=Backoff(initial=0.01)) == "done"
    assert calls == 3


async def test_the_last_failure_is_raised_at_the_deadline_and_others_at_once() -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()

    async def slow_fail() -> None:
        raise TimeoutError

    with pytest.raises(TimeoutError):
        await retrying(slow_fail, retry_on=(TimeoutError,), deadline=0.3, backoff=Backoff(initial=0.05, cap=0.05))
    assert 0.2 <= loop.time() - began < 1.0

    calls = 0

    async def bad() -> None:
        nonlocal calls
        calls += 1
        raise ValueError

    with pytest.raises(ValueError):
        await retrying(bad, retry_on=(TimeoutError,), deadline=5.0)
    assert calls == 1
