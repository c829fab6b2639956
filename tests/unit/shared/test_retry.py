"""``retry.retrying``: a repeatable operation done again on the listed failures, within a deadline."""

from __future__ import annotations

import asyncio

import pytest

from drover.shared.retry import Backoff, Patience, retrying


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


async def test_patience_doubles_after_each_timeout_up_to_its_cap_and_starts_over_after_an_answer() -> None:
    p = Patience(first=0.02, cap=0.05)

    async def never() -> None:
        await asyncio.Event().wait()  # a request nobody answers

    async def answered() -> str:
        return "ok"

    assert p.timeout == 0.02
    for expected in (0.04, 0.05, 0.05):
        with pytest.raises(TimeoutError):
            await p.run(never())
        assert p.timeout == expected
    assert await p.run(answered()) == "ok" and p.timeout == 0.02
