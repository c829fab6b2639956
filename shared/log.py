"""structlog set-up: JSON lines for daemons, readable console lines for interactive use."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import structlog


def configure(*, json: bool = True, level: str = "info") -> None:
    lvl = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(stream=sys.stderr, level=lvl, format="%(message)s")
    logging.getLogger("nats").setLevel(logging.CRITICAL)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


class Throttled:
    """A warning said at most once every ``every`` seconds (by ``clock``): a failure that repeats each beat
    is said loudly, never dropped silently, without flooding the log."""

    def __init__(self, log: structlog.typing.FilteringBoundLogger, every: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log, self.every, self.clock = log, every, clock
        self._said: float | None = None

    def warning(self, event: str, **kw: object) -> bool:
        """Log ``event`` unless it was said less than ``every`` seconds ago; True when it was logged."""
        t = self.clock()
        if self._said is not None and t - self._said <= self.every:
            return False
        self._said = t
        self.log.warning(event, **kw)
        return True
