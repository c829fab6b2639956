"""The bound on nats-py's first connect: an authorization violation ends it at once, other errors after the
budget, and once connected errors go to the caller's callback."""

from __future__ import annotations

import asyncio

import pytest
from nats.errors import AuthorizationError, Error

from drover.shared.firstconnect import ConnectAborted, FirstConnect


def test_authorization_violation_ends_the_connect_at_once() -> None:
    guard = FirstConnect(3)
    with pytest.raises(ConnectAborted):
        asyncio.run(guard.on_error(Error("nats: 'Authorization Violation'")))
    assert guard.refused
    with pytest.raises(ConnectAborted):
        asyncio.run(FirstConnect(1).on_error(AuthorizationError()))


def test_other_errors_end_it_after_the_budget() -> None:
    guard = FirstConnect(1, attempts_per_server=2, discovered=2)  # 2 x (1 listed + 2 advertised)
    for _ in range(5):
        asyncio.run(guard.on_error(ConnectionResetError(104, "reset")))
    with pytest.raises(ConnectAborted):
        asyncio.run(guard.on_error(ConnectionResetError(104, "reset")))
    assert not guard.refused and len(guard.errors) == 6


def test_after_connecting_errors_go_to_the_callback_and_never_abort() -> None:
    seen: list[Exception] = []

    async def after(exc: Exception) -> None:
        seen.append(exc)

    guard = FirstConnect(1, after=after)
    guard.connected()
    asyncio.run(guard.on_error(Error("nats: 'Authorization Violation'")))
    assert len(seen) == 1 and guard.errors == []
