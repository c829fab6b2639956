"""Rendering for the CLI: aligned tables, JSON, YAML, and the little formatters the tables use."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import click

from drover.shared.units import format_cpu, format_memory

NONE = "<none>"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, indent: str = "", gap: int = 3) -> str:
    """An aligned plain-text table with an upper-case header row; the last column is never padded."""
    head = [str(h).upper() for h in headers]
    body = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in head]
    for row in body:
        for i, v in enumerate(row):
            if i < len(widths):
                widths[i] = max(widths[i], len(v))
    lines = []
    for row in [head, *body]:
        parts = [v.ljust(widths[i]) if i < len(row) - 1 else v for i, v in enumerate(row)]
        lines.append(indent + (" " * gap).join(parts).rstrip())
    return "\n".join(lines)


def cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "-"
    return " ".join(str(value).split())  # a newline in a message must not break the table


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str)


def to_yaml(data: Any) -> str:
    import yaml  # only -o yaml and describe need it; a plain `get` stays fast

    return yaml.safe_dump(_plain(data), sort_keys=False, default_flow_style=False, allow_unicode=True).rstrip("\n")


def _plain(data: Any) -> Any:
    """JSON round trip so YAML shows only plain types (no python tags)."""
    return json.loads(json.dumps(data, default=str))


def echo(text: str = "") -> None:
    click.echo(text)


def warn(text: str) -> None:
    click.echo(text, err=True)


def is_tty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


# --- time -----------------------------------------------------------------------------------------------------


def timestamp(value: Any) -> float | None:
    """A unix time from what the controller sends: a float or an ISO-8601 string (``...Z``)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    return None


def iso(ts: float | None) -> str | None:
    """The controller's time format: ISO-8601 UTC with milliseconds and a ``Z``."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def age(value: Any, now: float | None = None) -> str:
    """How long ago, kubectl style: ``5s``, ``3m``, ``2h``, ``4d``."""
    ts = timestamp(value)
    if ts is None:
        return "-"
    secs = max(0.0, (time.time() if now is None else now) - ts)
    if secs < 120:
        return f"{int(secs)}s"
    if secs < 3600 * 2:
        return f"{int(secs // 60)}m"
    if secs < 86400 * 2:
        return f"{int(secs // 3600)}h"
    return f"{int(secs // 86400)}d"


def clock(value: Any) -> str:
    """Local wall-clock time of an event: ``2024-05-01T12:00:03`` (no spaces, so columns stay columns)."""
    ts = timestamp(value)
    if ts is None:
        return "-" if value in (None, "") else str(value)
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%dT%H:%M:%S")


# --- resources ---------------------------------------------------------------------------------------------------


def cpu(value: Any) -> str:
    try:
        return format_cpu(float(value or 0))
    except (TypeError, ValueError):
        return str(value)


def memory(value: Any) -> str:
    """Bytes for a table: exact when short (``64Mi``), else rounded to one decimal (``15.6Gi``)."""
    try:
        n = int(value or 0)
    except (TypeError, ValueError):
        return str(value)
    exact = format_memory(n)
    if len(exact) <= 6:
        return exact
    for unit, size in (("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + unit
    return str(n)


def pair(alloc: Any, cap: Any, fmt: Any) -> str:
    return f"{fmt(alloc)}/{fmt(cap)}"
