"""Pure HTML rendering of the dashboard's sections from the API's rows (the ``get``/``describe`` JSON).

Every section is rendered here, on the server, both for the first page (so its DOM holds everything on
load, even without scripts) and for each live update (the page swaps a section's HTML in place), so there
is one renderer, not one in Python and another in JavaScript. All text is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from drover.shared.units import format_cpu


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def age(iso: str | None, now: float) -> str:
    """``"3s"``, ``"4m"``, ``"2h"`` since an RFC 3339 time; ``never`` without one."""
    if not iso:
        return "never"
    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return "?"
    secs = max(0.0, now - then)
    if secs < 120:
        return f"{secs:.0f}s"
    if secs < 7200:
        return f"{secs / 60:.0f}m"
    return f"{secs / 3600:.0f}h"


def memory(nbytes: int) -> str:
    """``512Mi``, ``23.5Gi``: one decimal at most, unlike the exact ``format_memory``."""
    size = float(nbytes)
    for unit in ("", "Ki", "Mi", "Gi", "Ti"):
        if size < 1024 or unit == "Ti":
            return f"{size:.1f}".rstrip("0").rstrip(".") + unit
        size /= 1024
    return str(nbytes)


def bar(done: float, total: float, label: str, *, warn: bool = False) -> str:
    """A progress bar (a div, so it prints and screenshots without scripts) with its label."""
    pct = 0.0 if total <= 0 else max(0.0, min(100.0, 100.0 * done / total))
    cls = "bar warn" if warn else "bar"
    return (
        f'<div class="{cls}" title="{esc(label)}"><div class="fill" style="width:{pct:.0f}%"></div>'
        f'<span>{esc(label)}</span></div>'
    )


#: rows shown per table: a page of thousands of containers helps nobody and costs the controller every tick
MAX_ROWS = 500


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str, more: str = "drover get", total: int = 0
) -> str:
    """``rows`` already cut to ``MAX_ROWS`` by the caller (formatting rows nobody sees costs the controller);
    ``total`` is how many there were."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if total > len(rows):
        note = f"… and {total - len(rows)} more ({more})"
        body += f'<tr><td colspan="{len(headers)}" class="muted">{esc(note)}</td></tr>'
    if not rows:
        body = f'<tr><td colspan="{len(headers)}" class="muted">{esc(empty)}</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def status(value: Any) -> str:
    return f'<span class="st st-{esc(value)}">{esc(value)}</span>'


def autoscale_text(auto: Mapping[str, Any] | None) -> str:
    if not auto or not auto.get("policy"):
        return "off"
    policy = auto["policy"]
    span = f"{policy.get('min')}-{policy.get('max')}"
    if not auto.get("enabled"):
        return f"paused ({span})"
    desired = auto.get("desired")
    return f"on {span}" + (f" → {desired}" if desired is not None else "")


def _button(verb: str, label: str, **data: Any) -> str:
    attrs = "".join(f' data-{k}="{esc(v)}"' for k, v in data.items())
    return f'<button class="act" data-verb="{esc(verb)}"{attrs}>{esc(label)}</button>'


def services(
    rows: Sequence[Mapping[str, Any]], autoscale: Mapping[str, Mapping[str, Any]], *, actions: bool = False
) -> str:
    out = []
    for r in rows[:MAX_ROWS]:
        desired = int(r.get("replicas") or 0)
        ready, updated = int(r.get("ready") or 0), int(r.get("updated") or 0)
        name = esc(r.get("name"))
        out.append(
            [
                f'<a href="/service/{name}">{name}</a>',
                f'<span class="rd" data-service="{name}">{ready}/{desired}</span>',
                status(r.get("status")),
                esc(r.get("revision")),
                bar(updated, desired, f"{updated}/{desired} updated", warn=r.get("status") in ("degraded", "failed")),
                esc(autoscale_text(autoscale.get(str(r.get("name"))))),
                esc(r.get("image")),
                esc(r.get("message")),
            ]
        )
        if actions:
            out[-1].append(
                _button("scale", "scale", name=r.get("name"), replicas=desired)
                + _button("rollout_undo", "undo", name=r.get("name"))
            )
    headers = ["Name", "Ready", "Status", "Revision", "Rollout", "Autoscale", "Image", "Message"]
    headers += ["Actions"] if actions else []
    return _table(headers, out, "no services yet: drover apply -f FILE", "drover get services", len(rows))


def nodes(rows: Sequence[Mapping[str, Any]], now: float, *, actions: bool = False) -> str:
    out = []
    for r in rows[:MAX_ROWS]:
        cap, alloc = r.get("capacity") or {}, r.get("allocated") or {}
        cpu_c, cpu_a = float(cap.get("cpu") or 0), float(alloc.get("cpu") or 0)
        mem_c, mem_a = int(cap.get("memory") or 0), int(alloc.get("memory") or 0)
        out.append(
            [
                esc(r.get("name")),
                status(r.get("status")),
                esc(r.get("address")),
                bar(cpu_a, cpu_c, f"{format_cpu(cpu_a)} / {format_cpu(cpu_c)} cpu"),
                bar(mem_a, mem_c, f"{memory(mem_a)} / {memory(mem_c)}"),
                esc(r.get("containers")),
                esc(age(r.get("last_heartbeat"), now)),
            ]
        )
        if actions:
            cordoned = r.get("status") in ("cordoned", "draining")
            verb = "uncordon" if cordoned else "cordon"
            out[-1].append(_button(verb, verb, node=r.get("name")))
    headers = ["Name", "Status", "Address", "CPU", "Memory", "Containers", "Heartbeat"]
    headers += ["Actions"] if actions else []
    return _table(headers, out, "no nodes", "drover get nodes", len(rows))


def containers(rows: Sequence[Mapping[str, Any]], *, show_service: bool = True) -> str:
    out = []
    for r in rows[:MAX_ROWS]:
        row = [esc(r.get("name"))]
        if show_service:
            row.append(esc(r.get("service")))
        row += [
            esc(r.get("node")),
            esc(r.get("revision")),
            status(r.get("state")),
            "yes" if r.get("ready") else "no",
            esc(r.get("restarts")),
            esc(r.get("host_port") or "-"),
        ]
        out.append(row)
    headers = ["Name", *(["Service"] if show_service else [])]
    headers += ["Node", "Revision", "State", "Ready", "Restarts", "Host port"]
    return _table(headers, out, "no containers", "drover get containers", len(rows))


def events(rows: Sequence[Mapping[str, Any]]) -> str:
    out = [
        [
            esc(str(r.get("time") or "")[11:19]),
            esc(r.get("kind")),
            esc(r.get("service") or "-"),
            esc(r.get("node") or "-"),
            f'<span class="msg">{esc(r.get("message"))}</span>',
        ]
        for r in reversed(rows)  # newest first on a page
    ]
    return _table(["Time", "Kind", "Service", "Node", "Message"], out, "no events yet")


def history(rows: Sequence[Mapping[str, Any]]) -> str:
    out = [[esc(r.get("revision")), esc(r.get("time")), esc(r.get("change")), esc(r.get("result"))] for r in rows]
    return _table(["Revision", "Time", "Change", "Result"], out, "no revisions")


def chart(samples: Sequence[tuple[float, int, float]], now: float, *, window: float = 300.0) -> str:
    """An inline SVG of ready replicas (line) and request rate (area) over the last ``window`` seconds."""
    width, height, pad = 600, 140, 24
    recent = [s for s in samples if now - s[0] <= window]
    top_ready = max([s[1] for s in recent] + [1])
    top_rate = max([s[2] for s in recent] + [1.0])

    def x(t: float) -> float:
        return pad + (width - 2 * pad) * (1 - (now - t) / window)

    def y(v: float, top: float) -> float:
        return height - pad - (height - 2 * pad) * (v / top)

    ready_pts = " ".join(f"{x(t):.1f},{y(r, top_ready):.1f}" for t, r, _ in recent)
    rate_pts = " ".join(f"{x(t):.1f},{y(q, top_rate):.1f}" for t, _, q in recent)
    last = recent[-1] if recent else (now, 0, 0.0)
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="ready replicas and request rate, last {window / 60:.0f} minutes">'
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fbfbfd" stroke="#ddd"/>'
        f'<polyline points="{rate_pts}" fill="none" stroke="#e39b2d" stroke-width="1.5"/>'
        f'<polyline points="{ready_pts}" fill="none" stroke="#2d6be3" stroke-width="2"/>'
        f'<text x="{pad}" y="16" font-size="12" fill="#2d6be3">ready {last[1]} (max {top_ready})</text>'
        f'<text x="{width // 2}" y="16" font-size="12" fill="#e39b2d">{last[2]:.1f} req/s (max {top_rate:.1f})</text>'
        f'<text x="{pad}" y="{height - 6}" font-size="11" fill="#888">-{window / 60:.0f} min</text>'
        f'<text x="{width - pad - 20}" y="{height - 6}" font-size="11" fill="#888">now</text>'
        "</svg>"
    )
