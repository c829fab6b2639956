"""Docker driver start path: a container that exits at once is neither a failed create nor a nameless death."""

from __future__ import annotations

from typing import Any

import pytest
from aiodocker.exceptions import DockerError

from drover.agent.drivers.base import DriverError
from drover.agent.drivers.docker import DockerDriver

CID = "a0e1fc6370e507c2b28063e4c78753215bb342b02838f38cb444e0f16f5c0724"


class FakeDocker:
    def __init__(self, status: int, message: str) -> None:
        self.error = DockerError(status, message)

    async def _query_json(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


@pytest.mark.parametrize("status, message", [
    (404, f"No such container: {CID}"),
    (500, f"Cannot update container {CID}: task {CID} not found: not found"),  # Docker 20.10, exited meanwhile
    (500, "Cannot update container: cannot update a stopped container"),
])
async def test_quota_of_an_exited_container_is_skipped(status: int, message: str) -> None:
    driver = DockerDriver("c", "n", docker=FakeDocker(status, message))  # type: ignore[arg-type]
    await driver._set_cpu(CID, 250_000_000)


async def test_other_quota_failures_are_errors() -> None:
    driver = DockerDriver("c", "n", docker=FakeDocker(500, "Cannot update container: invalid NanoCpus"))  # type: ignore[arg-type]
    with pytest.raises(DriverError, match="cpu limit"):
        await driver._set_cpu(CID, 250_000_000)


async def test_a_container_that_dies_before_it_is_observed_is_named_from_its_label() -> None:
    """A replica that exits right after its start dies before the agent observed it: the event names it
    from the container's label (was "drover--<id> died" with no service)."""
    import asyncio
    from collections.abc import AsyncIterator

    from drover.agent.driverevents import follow_driver_events
    from drover.agent.drivers.base import DriverEvent

    got: list[tuple[str, str, str, str]] = []
    done = asyncio.Event()

    class Events:
        async def events(self) -> AsyncIterator[DriverEvent]:
            yield DriverEvent("60da5711cb", "die", CID, 3, service="fl")
            done.set()
            await asyncio.Event().wait()

    task = asyncio.ensure_future(follow_driver_events(
        Events(), stopping=lambda: (), service_of=lambda cid: "",  # type: ignore[arg-type]
        event=lambda *e: got.append(e), wake=lambda: None,
    ))
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        task.cancel()
    assert got == [("died", "fl", "60da5711cb", "drover-fl-60da5711cb died with exit code 3")]
