"""``drover get`` and ``drover describe``."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import click
from click.shell_completion import CompletionItem

from drover.cli import options, output
from drover.cli.commands_context import complete_resource_name
from drover.cli.errors import EXIT_FAILED, CliError, reply_error

if TYPE_CHECKING:
    from drover.cli.client import Client  # the client (asyncio, nats) loads only when a command runs
    from drover.cli.context import Target
    from drover.cli.reply import Reply

RESOURCES = {
    "services": "services",
    "service": "services",
    "svc": "services",
    "containers": "containers",
    "container": "containers",
    "ctr": "containers",
    "pods": "containers",
    "pod": "containers",
    "po": "containers",
    "nodes": "nodes",
    "node": "nodes",
    "no": "nodes",
}
SINGULAR = {"services": "service", "containers": "container", "nodes": "node"}


def resource_kind(word: str, allowed: tuple[str, ...] = ("services", "containers", "nodes")) -> str:
    kind = RESOURCES.get(word.lower())
    if kind is None or kind not in allowed:
        raise click.UsageError(f"unknown resource type {word!r}: use one of " + ", ".join(allowed))
    return kind


def _ready(v: Any) -> str:
    return "yes" if v else "no"


def _ports(ports: Any) -> str:
    if isinstance(ports, dict) and ports:
        return ",".join(f"{k}:{v}" for k, v in ports.items())
    return "-"


def services_table(rows: list[dict[str, Any]], wide: bool) -> str:
    headers = ["NAME", "IMAGE", "REVISION", "READY", "STATUS"]
    if wide:
        headers += ["RUNNING", "UPDATED", "MESSAGE"]
    body = []
    for r in rows:
        line = [r.get("name"), r.get("image"), r.get("revision"), f"{r.get('ready', 0)}/{r.get('replicas', 0)}"]
        line.append(r.get("status"))
        if wide:
            line += [r.get("running"), f"{r.get('updated', 0)}/{r.get('replicas', 0)}", r.get("message")]
        body.append(line)
    return output.table(headers, body)


def containers_table(rows: list[dict[str, Any]], wide: bool) -> str:
    headers = ["NAME", "SERVICE", "NODE", "REVISION", "STATE", "READY", "RESTARTS", "PORT"]
    if wide:
        headers = ["ID", *headers, "PORTS", "MESSAGE"]
    body = []
    for r in rows:
        line = [
            r.get("name"),
            r.get("service"),
            r.get("node"),
            r.get("revision"),
            r.get("state"),
            _ready(r.get("ready")),
            r.get("restarts", 0),
            r.get("host_port"),
        ]
        if wide:
            line = [r.get("id"), *line, _ports(r.get("ports")), r.get("message")]
        body.append(line)
    return output.table(headers, body)


def _count(v: Any) -> Any:
    return len(v) if isinstance(v, (list, dict)) else (v if v is not None else 0)


def nodes_table(rows: list[dict[str, Any]], wide: bool) -> str:
    headers = ["NAME", "STATUS", "ADDRESS", "CPU", "MEMORY", "CONTAINERS", "HEARTBEAT"]
    if wide:
        headers += ["DRIVER", "LABELS"]
    body = []
    for r in rows:
        cap = r.get("capacity") or {}
        alloc = r.get("allocated") or {}
        line = [
            r.get("name"),
            r.get("status"),
            r.get("address"),
            output.pair(alloc.get("cpu"), cap.get("cpu"), output.cpu),
            output.pair(alloc.get("memory"), cap.get("memory"), output.memory),
            _count(r.get("containers")),
            output.age(r.get("last_heartbeat")) if r.get("last_heartbeat") else "never",
        ]
        if wide:
            labels = r.get("labels") or {}
            line += [r.get("driver"), ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or output.NONE]
        body.append(line)
    return output.table(headers, body)


TABLES = {"services": services_table, "containers": containers_table, "nodes": nodes_table}


def not_found(kind: str, name: str) -> CliError:
    return CliError(f'{SINGULAR.get(kind, kind)} "{name}" not found', code=EXIT_FAILED)


PAGE = 500  # rows per request: a reply must fit in one NATS message (1 MiB by default)


def _page_key(kind: str, row: dict[str, Any]) -> list[str]:
    """The controller's sort key of a row (``controller/views.page_key``): the next page starts after it."""
    if kind == "containers":
        return [str(row.get("service")), str(row.get("node")), str(row.get("id"))]
    return [str(row.get("name"))]


def _pages(
    kind: str, name: str | None, service: str | None, limit: int | None
) -> Generator[tuple[str, dict[str, Any]], Reply, list[dict[str, Any]]]:
    """Every matching row (at most ``limit``), asked for in pages of ``PAGE`` rows: yields each request as
    (verb, body) and takes its reply, so that the same paging runs over either client (``fetch``, ``fetch_now``)."""
    body: dict[str, Any] = {"name": name}
    if kind == "containers":
        body["service"] = service
    rows: list[dict[str, Any]] = []
    size = PAGE if limit is None else min(PAGE, max(1, limit))
    after: list[str] | None = None
    while True:
        body["page"] = size
        if after is not None:
            body["after"] = after
        reply = yield f"get_{kind}", dict(body)
        if not reply.ok:
            if reply.code == "not-found" and name is not None:
                raise not_found(kind, name)
            if reply.code == "not-found" and service is not None:
                raise not_found("services", service)
            raise reply_error(f"get_{kind}", reply)
        chunk = reply.data if isinstance(reply.data, list) else []
        chunk = [r for r in chunk if isinstance(r, dict)]
        if after is not None and chunk and _page_key(kind, chunk[0]) <= after:
            break  # a controller without paging sent everything again: we have it already
        rows += chunk
        if len(chunk) != size or (limit is not None and len(rows) >= limit):
            break  # a short page is the last one (a longer one: a controller without paging sent all)
        after = _page_key(kind, chunk[-1])
    if name is not None:
        if kind == "containers":
            rows = [r for r in rows if name in (r.get("name"), r.get("id"), r.get("container_id"))] or rows
        else:
            rows = [r for r in rows if r.get("name") == name]
        if not rows:
            raise not_found(kind, name)
    return rows if limit is None else rows[:limit]


async def fetch(
    c: Client, kind: str, name: str | None, service: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """``_pages`` over a connected client (commands that make more requests on one connection)."""
    pages = _pages(kind, name, service, limit)
    try:
        verb, body = next(pages)
        while True:
            verb, body = pages.send(await c.request_raw(verb, body))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def fetch_now(
    t: Target, kind: str, name: str | None, service: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """``_pages`` through ``call.request`` (the lean request path first: a plain ``get`` loads neither asyncio
    nor nats-py when the cluster answers)."""
    from drover.cli import call

    pages = _pages(kind, name, service, limit)
    try:
        verb, body = next(pages)
        while True:
            verb, body = pages.send(call.request(t, verb, body, call.REQUEST_TIMEOUT))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def render(kind: str, rows: list[dict[str, Any]], fmt: str | None) -> None:
    fmt = (fmt or "").lower()
    if fmt == "json":
        output.echo(output.to_json(rows))
    elif fmt == "yaml":
        output.echo(output.to_yaml(rows))
    elif fmt == "name":
        for r in rows:
            output.echo(f"{SINGULAR[kind]}/{r.get('name')}")
    elif not rows:
        output.warn(f"No {kind} found.")
    else:
        output.echo(TABLES[kind](rows, fmt == "wide"))


@click.command("get")
@click.argument(
    "resource",
    metavar="services|containers|nodes",
    shell_complete=lambda *_: [CompletionItem(k) for k in ("services", "containers", "nodes")],
)
@click.argument("name", required=False, shell_complete=complete_resource_name)
@options.output_option()
@click.option("--service", "service", metavar="NAME", help="containers: only those of this service.")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N", help="At most N rows (default: all).")
@options.cluster_options
def get_cmd(resource: str, name: str | None, fmt: str | None, service: str | None, limit: int | None) -> None:
    """List services, containers or nodes (a table, or -o json|yaml)."""
    kind = resource_kind(resource)
    if "/" in (name or ""):
        name = (name or "").rpartition("/")[2]
    if service is not None and kind != "containers":
        raise click.UsageError("--service only applies to 'get containers'")

    render(kind, fetch_now(options.target(), kind, name, service, limit), fmt)


# --- describe ---------------------------------------------------------------------------------------------------


def _fields(pairs: list[tuple[str, Any]]) -> list[str]:
    width = max(len(k) for k, _ in pairs) + 2
    return [f"{(k + ':').ljust(width)}{output.cell(v) if not isinstance(v, str) else (v or '-')}" for k, v in pairs]


def _labels(labels: Any) -> str:
    if isinstance(labels, dict) and labels:
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return output.NONE


def _section(title: str, text: str) -> list[str]:
    return ["", f"{title}:", *(("  " + line) if line else "" for line in text.splitlines())]


def events_block(events: list[dict[str, Any]], *, node_column: bool = True, service_column: bool = False) -> str:
    if not events:
        return output.NONE
    headers = ["TIME", "KIND"]
    if service_column:
        headers.append("SERVICE")
    if node_column:
        headers.append("NODE")
    headers += ["CONTAINER", "MESSAGE"]
    body = []
    for e in events:
        row = [output.clock(e.get("time")), e.get("kind")]
        if service_column:
            row.append(e.get("service"))
        if node_column:
            row.append(e.get("node"))
        row += [e.get("container"), e.get("message")]
        body.append(row)
    return output.table(headers, body)


def history_table(history: list[dict[str, Any]]) -> str:
    return output.table(
        ["REVISION", "TIME", "CHANGE", "RESULT"],
        [[h.get("revision"), output.clock(h.get("time")), h.get("change"), h.get("result")] for h in history],
    )


_DURATIONS = {
    ("stop_grace",),
    ("health", "interval"),
    ("health", "timeout"),
    ("health", "initial_delay"),
    ("update", "min_ready"),
    ("update", "progress_deadline"),
    ("autoscale", "scale_up_window"),
    ("autoscale", "scale_down_window"),
}


def readable_spec(spec: Any, path: tuple[str, ...] = ()) -> Any:
    """The stored (canonical) spec as a user would write it: ``64Mi``, ``2s``; empty values left out."""
    from drover.shared.units import format_duration, format_memory

    if isinstance(spec, dict):
        out = {}
        for k, v in spec.items():
            shown = readable_spec(v, (*path, str(k)))
            if shown is None or shown == {} or shown == []:
                continue
            out[k] = shown
        return out
    if isinstance(spec, list):
        return [readable_spec(v, path) for v in spec]
    try:
        if path == ("resources", "memory") and isinstance(spec, int) and not isinstance(spec, bool):
            return format_memory(spec)
        if path in _DURATIONS and isinstance(spec, (int, float)) and not isinstance(spec, bool):
            return format_duration(float(spec))
    except (ValueError, TypeError):
        pass
    return spec


def describe_service_text(data: dict[str, Any]) -> str:
    row = data.get("service") or {}
    rollout = data.get("rollout") or {}
    replicas = row.get("replicas", 0)
    pairs: list[tuple[str, Any]] = [
        ("Name", row.get("name")),
        ("Image", row.get("image")),
        ("Labels", _labels(data.get("labels", row.get("labels")))),
        ("Revision", row.get("revision")),
        ("Status", row.get("status")),
        (
            "Replicas",
            f"{replicas} desired | {row.get('updated', 0)} updated | {row.get('running', 0)} running | "
            f"{row.get('ready', 0)} ready",
        ),
    ]
    if rollout:
        state = str(rollout.get("state") or "-")
        if rollout.get("paused"):
            state += " (paused)"
        pairs.append(("Rollout", state))
        if rollout.get("reason"):
            pairs.append(("Reason", rollout.get("reason")))
    if row.get("message") and row.get("message") != rollout.get("reason"):
        pairs.append(("Message", row.get("message")))
    autoscale = data.get("autoscale") or {}
    if autoscale.get("policy"):
        p = autoscale["policy"]
        targets = ", ".join(
            f"{label} {p[key]:g}{unit}"
            for key, label, unit in (
                ("cpu_percent", "cpu", "%"), ("memory_percent", "memory", "%"), ("rps_per_replica", "rps", "/replica")
            )
            if p.get(key) is not None
        )
        state = "on" if autoscale.get("enabled") else f"off ({autoscale.get('disabled_reason') or 'disabled'})"
        pairs.append(("Autoscale", f"{state}: {p.get('min')}-{p.get('max')} replicas, {targets or 'no target'}"))
        if autoscale.get("reason"):
            pairs.append(("Last decision", autoscale["reason"]))
    if row.get("created"):
        pairs.append(("Created", f"{output.clock(row.get('created'))} ({output.age(row.get('created'))} ago)"))
    if row.get("updated_at"):
        pairs.append(("Updated", f"{output.clock(row.get('updated_at'))} ({output.age(row.get('updated_at'))} ago)"))
    lines = _fields(pairs)
    spec = data.get("spec")
    if spec:
        lines += _section("Spec", output.to_yaml(readable_spec(spec)))
    history = data.get("history") or []
    if history:
        lines += _section("History", history_table(history))
    runs = data.get("runs") or []
    if runs:
        table = [[r.get("run"), r.get("revision"), output.clock(r.get("started")),
                  output.clock(r.get("finished")) if r.get("finished") else "-", r.get("result") or "running"]
                 for r in runs]
        lines += _section("Runs", output.table(["RUN", "REVISION", "STARTED", "FINISHED", "RESULT"], table))
    lines += _section("Containers", _containers_block(data, str(row.get("name") or "")))
    lines += _section("Events", events_block(data.get("events") or []))
    return "\n".join(lines)


DESCRIBE_TABLE_MAX = 20  # a service with more replicas is described by a summary, not a table


def _containers_block(data: dict[str, Any], name: str) -> str:
    containers = data.get("containers") or []
    summary = data.get("containers_summary") or {}
    total = summary.get("total", len(containers)) if isinstance(summary, dict) else len(containers)
    if not isinstance(total, int) or total <= DESCRIBE_TABLE_MAX:
        return containers_table(containers, False) if containers else output.NONE
    by_state = summary.get("by_state") or {}
    states = ", ".join(f"{n} {state}" for state, n in sorted(by_state.items(), key=lambda kv: (-kv[1], kv[0])))
    return (
        f"{total} in total: {states or 'state unknown'}, on {summary.get('nodes', '?')} nodes\n"
        f"(every one: drover get containers --service {name})"
    )


def describe_node_text(data: dict[str, Any]) -> str:
    row = data.get("node") or {}
    cap = row.get("capacity") or {}
    alloc = row.get("allocated") or {}
    hb = row.get("last_heartbeat")
    pairs: list[tuple[str, Any]] = [
        ("Name", row.get("name")),
        ("Status", row.get("status")),
        ("Address", row.get("address")),
        ("Labels", _labels(row.get("labels"))),
    ]
    if row.get("driver"):
        pairs.append(("Driver", row.get("driver")))
    pairs += [
        ("CPU", f"{output.cpu(alloc.get('cpu'))} allocated of {output.cpu(cap.get('cpu'))}"),
        ("Memory", f"{output.memory(alloc.get('memory'))} allocated of {output.memory(cap.get('memory'))}"),
        ("Containers", _count(row.get("containers"))),
        ("Heartbeat", f"{output.clock(hb)} ({output.age(hb)} ago)" if hb else "never"),
    ]
    lines = _fields(pairs)
    containers = data.get("containers") or []
    lines += _section("Containers", containers_table(containers, False) if containers else output.NONE)
    lines += _section("Events", events_block(data.get("events") or [], node_column=False, service_column=True))
    return "\n".join(lines)


@click.command("describe")
@click.argument(
    "resource", metavar="service|node", shell_complete=lambda *_: [CompletionItem(k) for k in ("service", "node")]
)
@click.argument("name", shell_complete=complete_resource_name)
@options.output_option(choices=("json", "yaml"))
@options.cluster_options
def describe_cmd(resource: str, name: str, fmt: str | None) -> None:
    """Show a service or node in detail: spec, status, containers, recent events."""
    kind = resource_kind(resource, ("services", "nodes"))
    if "/" in name:
        name = name.rpartition("/")[2]
    verb = "describe_service" if kind == "services" else "describe_node"

    from drover.cli import call

    # The lean request path first, as `get` (neither asyncio nor nats-py loaded when the cluster answers).
    reply = options.request(verb, {"name": name}, call.REQUEST_TIMEOUT)
    if not reply.ok:
        if reply.code == "not-found":
            raise not_found(kind, name)
        raise reply_error(verb, reply)
    data = reply.data or {}
    if fmt == "json":
        output.echo(output.to_json(data))
    elif fmt == "yaml":
        output.echo(output.to_yaml(data))
    elif kind == "services":
        output.echo(describe_service_text(data))
    else:
        output.echo(describe_node_text(data))
