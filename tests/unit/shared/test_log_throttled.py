"""Throttled: the one "said at most once a minute" warning shared by the agent's heartbeat sender and the
hollow fleet's."""

from __future__ import annotations

import structlog
from structlog.testing import capture_logs

from drover.shared.log import Throttled


def test_a_repeated_warning_is_said_once_per_period() -> None:
    now = [100.0]
    warn = Throttled(structlog.get_logger(), every=60.0, clock=lambda: now[0])
    with capture_logs() as logs:
        said = []
        for t in (100.0, 130.0, 160.0, 160.5, 200.0, 221.0):
            now[0] = t
            said.append(warn.warning("heartbeat not sent", node="n1", at=t))
    assert said == [True, False, False, True, False, True]
    assert [(e["event"], e["log_level"], e["at"]) for e in logs] == [
        ("heartbeat not sent", "warning", 100.0), ("heartbeat not sent", "warning", 160.5),
        ("heartbeat not sent", "warning", 221.0)]
