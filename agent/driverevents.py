"""The driver's event stream, as the agent uses it: a container that died on its own (not stopped by the
agent) becomes a ``died`` event (noting an OOM kill), and every event wakes the reconcile loop. The stream
is reopened with back-off when it fails, and a reopened stream wakes the loop too (events may be missed)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Container

import structlog

from drover.agent.drivers.base import Driver, container_name

ServiceOf = Callable[[str], str]  # container id -> its service ("" when unknown)
log = structlog.get_logger("drover.agent")

EventSink = Callable[[str, str, str, str], None]  # (kind, service, replica id, message)


async def follow_driver_events(
    driver: Driver, *, stopping: Callable[[], Container[str]], service_of: ServiceOf, event: EventSink,
    wake: Callable[[], None],
) -> None:
    """Run until cancelled. ``stopping()`` holds the container ids the agent itself is stopping."""
    oom: set[str] = set()
    delay = 0.5
    while True:
        try:
            async for ev in driver.events():
                delay = 0.5
                if ev.kind == "oom":
                    oom.add(ev.container_id)
                elif ev.kind == "die" and ev.container_id not in stopping():
                    # A container that dies right after its start is not observed yet: its label names it.
                    service = service_of(ev.container_id) or ev.service
                    killed = ev.container_id in oom
                    oom.discard(ev.container_id)
                    msg = f"{container_name(service, ev.id)} died with exit code {ev.exit_code}"
                    event("died", service, ev.id, msg + (" (out of memory)" if killed else ""))
                wake()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("driver event stream failed; reconnecting", error=repr(exc))
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)
        wake()  # events may have been missed
