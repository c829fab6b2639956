"""`describe service` of a big service prints a summary of its containers instead of a table."""

from __future__ import annotations

from drover.cli.commands_get import describe_service_text
from drover.controller import views


def rows(n: int) -> list[dict[str, object]]:
    return [{"id": f"r{i}", "name": f"drover-web-r{i}", "service": "web", "node": f"n{i % 7}", "revision": 1,
             "state": "running" if i % 50 else "starting", "ready": bool(i % 50)} for i in range(n)]


def test_small_service_keeps_its_table() -> None:
    r = rows(3)
    text = describe_service_text({"service": {"name": "web"}, "containers": r, "containers_summary": views.summary(r)})
    assert "drover-web-r2" in text and "in total" not in text


def test_a_thousand_replicas_are_summarised() -> None:
    r = rows(1000)
    data = {"service": {"name": "web"}, "containers": r[:100], "containers_summary": views.summary(r)}
    text = describe_service_text(data)
    assert "1000 in total: 980 running, 20 starting, on 7 nodes" in text
    assert "drover-web-r" not in text and len(text.splitlines()) < 20
