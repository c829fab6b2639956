"""``drover events`` and ``drover logs``."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

import click

from drover.cli import options, output
from drover.cli.commands_context import complete_services
from drover.cli.commands_get import fetch, not_found
from drover.cli.errors import EXIT_FAILED, CliError
from drover.shared import wire
from drover.shared.aio import Background
from drover.shared.errors import WireError

if TYPE_CHECKING:
    from drover.cli.client import Client  # the client (asyncio, nats) loads only when a command runs

if TYPE_CHECKING:
    from drover.shared.models import Event

EVENT_KEYS = ("time", "kind", "service", "node", "container", "message")
EVENT_HEADERS = ["TIME", "KIND", "SERVICE", "NODE", "CONTAINER", "MESSAGE"]


def event_row(e: dict[str, Any]) -> list[Any]:
    return [output.clock(e.get("time")), e.get("kind"), e.get("service"), e.get("node"), e.get("container"),
            e.get("message")]


def event_dict(ev: Event) -> dict[str, Any]:
    """A live event in the same shape as the controller's ``events`` rows (ISO time)."""
    d = ev.model_dump(mode="json")
    d["time"] = output.iso(ev.time)
    return d


def _key(e: dict[str, Any]) -> tuple[Any, ...]:
    return (output.timestamp(e.get("time")), *(e.get(k) for k in EVENT_KEYS[1:]))


@click.command("events")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events until Ctrl-C.")
@click.option("--service", metavar="NAME", help="Only events of this service.")
@click.option("--node", metavar="NAME", help="Only events of this node.")
@click.option("--limit", type=click.IntRange(min=0), default=200, show_default=True, help="How many past events.")
@options.output_option(choices=("json",))
@options.cluster_options
def events_cmd(follow: bool, service: str | None, node: str | None, limit: int, fmt: str | None) -> None:
    """Cluster events, newest last."""
    as_json = fmt == "json"

    def keep(e: dict[str, Any]) -> bool:
        return (service is None or e.get("service") == service) and (node is None or e.get("node") == node)

    async def go(c: Client) -> None:
        sub = await c.nc.subscribe(c.names.events_all) if follow else None
        past = await past_events(c, service, limit)
        past = [e for e in past if isinstance(e, dict) and keep(e)]
        if not follow:
            if as_json:
                output.echo(output.to_json(past))
            elif past:
                output.echo(output.table(EVENT_HEADERS, [event_row(e) for e in past]))
            else:
                output.warn("No events found.")
            return
        assert sub is not None
        widths = [19, 18, 12, 12, 12]
        if as_json:
            for e in past:
                output.echo(json.dumps(e))
        else:
            output.echo(_line(EVENT_HEADERS, widths))
            for e in past:
                output.echo(_line(event_row(e), widths))
        seen = {_key(e) for e in past}
        from drover.shared.models import decode_event  # only a follower decodes live events (keeps `events` fast)

        async for msg in sub.messages:
            try:
                e = event_dict(decode_event(msg.subject, msg.data))  # an agent speaks only of its own node
            except WireError:
                continue
            if not keep(e) or _key(e) in seen:
                continue
            seen.clear()  # only the backlog can repeat
            output.echo(json.dumps(e) if as_json else _line(event_row(e), widths))

    _run_following(go, follow)


EVENTS_PAGE = 1000  # events per request: a reply must fit in one NATS message


async def past_events(c: Client, service: str | None, limit: int) -> list[Any]:
    """The last ``limit`` events (0: all the controller keeps), asked for in pages of ``EVENTS_PAGE``."""
    out: list[Any] = []
    while True:
        body = {"service": service, "limit": limit, "page": EVENTS_PAGE, "offset": len(out)}
        chunk = await c.call("events", body)
        chunk = chunk if isinstance(chunk, list) else []
        out += chunk
        if len(chunk) != EVENTS_PAGE:
            return out  # a short page is the last (a longer one: a controller without paging sent all)


def _line(cells: list[Any], widths: list[int]) -> str:
    texts = [output.cell(v) if not isinstance(v, str) else v for v in cells]
    texts = [t if t else "-" for t in texts]
    parts = [t.ljust(widths[i]) if i < len(widths) else t for i, t in enumerate(texts)]
    return "   ".join(parts).rstrip()


def _run_following(go: Any, follow: bool) -> None:
    try:
        options.run(go, keep_reconnecting=follow)
    except KeyboardInterrupt:
        if not follow:
            raise
        # Ctrl-C ends a follow normally.


# --- logs ------------------------------------------------------------------------------------------------------


class _Printer:
    """Prints ``[container] line``; lines of one message stay together."""

    def __init__(self) -> None:
        self.errors = 0

    def lines(self, name: str, lines: list[Any]) -> None:
        for line in lines:
            text = str(line).rstrip("\r\n")
            click.echo(f"[{name}] {text}")

    def error(self, text: str) -> None:
        self.errors += 1
        output.warn(f"error: {text}")


async def _first_logs(c: Client, node: str, name: str, req: dict[str, Any], p: _Printer) -> bool:
    """Ask the container's agent for its logs and print the lines of the reply; False (reported) on failure."""
    try:
        reply = await c.agent_request(node, "logs", req)
    except CliError as exc:
        p.error(f"logs of {name}: {'; '.join(exc.lines)}")
        return False
    if not reply.get("ok", False):
        p.error(f"logs of {name}: {reply.get('error') or 'the agent refused'}")
        return False
    if reply.get("truncated"):  # the agent's default tail or reply size limit left older lines out
        output.warn(f"{name}: older lines left out (the agent sends at most its newest ~900 kB; use --tail N)")
    p.lines(name, reply.get("lines") or [])
    return True


async def _logs_once(c: Client, row: dict[str, Any], tail: int | None, p: _Printer) -> None:
    name = str(row.get("name") or row.get("id"))
    node = str(row.get("node") or "")
    req = {"container": row.get("id") or name, "tail": tail, "follow": False}
    await _first_logs(c, node, name, req, p)


async def _logs_follow(c: Client, row: dict[str, Any], tail: int | None, p: _Printer) -> None:
    name = str(row.get("name") or row.get("id"))
    node = str(row.get("node") or "")
    stream = c.nc.new_inbox()
    sub = await c.nc.subscribe(stream)

    async def keepalive() -> None:
        while True:
            with contextlib.suppress(Exception):
                await c.nc.publish(f"{stream}.alive", wire.encode({"alive": True}))
            await asyncio.sleep(1.5)

    try:
        async with Background("logs-follow") as bg:
            bg.start(keepalive(), "keepalive")
            req = {"container": row.get("id") or name, "tail": tail, "follow": True, "stream": stream}
            if not await _first_logs(c, node, name, req, p):
                return
            async for msg in sub.messages:
                try:
                    body = wire.decode(msg.data)
                except WireError:
                    continue
                if body.get("lines"):
                    p.lines(name, body["lines"])
                if body.get("eof"):
                    return
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


@click.command("logs")
@click.argument("name", shell_complete=complete_services)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option("--tail", type=click.IntRange(min=0), default=None, help="Only the last N lines of each container.")
@options.cluster_options
def logs_cmd(name: str, follow: bool, tail: int | None) -> None:
    """Logs of a service's containers, each line prefixed by [container]."""
    name = name.rpartition("/")[2]

    async def go(c: Client) -> int:
        p = _Printer()
        rows = await fetch(c, "containers", None, name)
        if not rows:
            try:
                await fetch(c, "services", name)
            except CliError:
                # Not a service: maybe one container's name or id; else 'service "x" not found' (exit 1).
                try:
                    rows = await fetch(c, "containers", name)
                except CliError:
                    raise not_found("services", name) from None
        single = bool(rows) and all(name in (r.get("name"), r.get("id")) for r in rows)
        rows = [r for r in rows if r.get("state") not in ("pending", "lost") or follow]
        if not rows and not follow:
            output.warn(f"service {name} has no containers")
            return 0
        if not follow:
            for r in rows:
                await _logs_once(c, r, tail, p)
            return 1 if p.errors and p.errors == len(rows) else 0
        following: set[str] = set()
        async with Background("logs") as bg:
            while True:
                for r in rows:
                    rid = str(r.get("id"))
                    if rid not in following and r.get("state") not in ("pending", "lost"):
                        following.add(rid)
                        bg.start(_logs_follow(c, r, tail, p), rid)
                await asyncio.sleep(2.0)  # then look for new containers of the service
                if not single:
                    with contextlib.suppress(CliError):
                        rows = await fetch(c, "containers", None, name)

    code = 0
    try:
        code = options.run(go, keep_reconnecting=follow)
    except KeyboardInterrupt:
        if not follow:
            raise
    if code:
        raise click.exceptions.Exit(EXIT_FAILED)


__all__ = ["events_cmd", "logs_cmd", "not_found"]
