"""Every proxy integration test runs twice: on asyncio's default loop and on uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import pytest
import uvloop

from drover.agent.proxy import Backend, ServiceProxy
from tests.integration.proxy.helpers import HOST, Handler, TestBackend, start_backend, stop_backend


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture
async def backends() -> AsyncIterator[Callable[[str, Handler], Awaitable[TestBackend]]]:
    """``await backends(name, behaviour)`` starts a test backend; all are stopped at teardown."""
    started: list[TestBackend] = []

    async def make(name: str, handler: Handler) -> TestBackend:
        b = await start_backend(name, handler)
        started.append(b)
        return b

    yield make
    for b in started:
        await stop_backend(b)


@pytest.fixture
async def proxies() -> AsyncIterator[Callable[..., Awaitable[ServiceProxy]]]:
    """``await proxies(resolve, **options)``: a started ServiceProxy on 127.0.0.1 (a free port);
    all are closed at teardown."""
    started: list[ServiceProxy] = []

    async def make(resolve: Callable[[], Sequence[Backend]], **options: Any) -> ServiceProxy:
        proxy = ServiceProxy("web", HOST, 0, resolve, **options)
        await proxy.start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        await proxy.close()
