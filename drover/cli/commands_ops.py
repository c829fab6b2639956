"""Operations on running services and nodes: ``scale``, ``cordon``/``uncordon``/``drain``, ``rollout …``,
``endpoints``, ``leader``."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import click

from drover.cli import options, output
from drover.cli.commands_context import complete_nodes, complete_services
from drover.cli.commands_get import history_table, not_found
from drover.cli.errors import EXIT_FAILED, CliError, Unsupported, reply_error
from drover.shared.units import parse_duration

if TYPE_CHECKING:
    from drover.cli.client import Client  # the client (asyncio, nats) loads only when a command runs

POLL = 0.5


def _service_name(name: str) -> str:
    kind, _, rest = name.rpartition("/")
    if kind and kind.lower() not in ("service", "services", "svc"):
        raise click.UsageError(f"{name!r}: expected a service name")
    return rest


async def _call(c: Client, verb: str, body: dict[str, Any], kind: str, name: str, timeout: float = 30.0) -> Any:
    reply = await c.request_raw(verb, body, timeout=timeout)
    if reply.ok:
        return reply.data
    if reply.code == "not-found":
        raise not_found(kind, name)
    raise reply_error(verb, reply)


def _replicas(value: str) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        n = -1
    from drover.shared.limits import MAX_REPLICAS

    if not 0 <= n <= MAX_REPLICAS:
        raise click.BadParameter(
            f"{value!r} is not a number of replicas (an integer 0-{MAX_REPLICAS})", param_hint="'N'"
        )
    return n


@click.command("scale")
@click.argument("name", shell_complete=complete_services)
@click.argument("replicas", metavar="N", callback=lambda _c, _p, v: _replicas(v))
@options.cluster_options
def scale_cmd(name: str, replicas: int) -> None:
    """Set the number of replicas of a service (turns autoscaling off until the next apply)."""
    name = _service_name(name)

    async def go(c: Client) -> Any:
        return await _call(c, "scale", {"name": name, "replicas": replicas}, "services", name)

    data = options.run(go) or {}
    output.echo(f"service/{data.get('name', name)} scaled to {data.get('replicas', replicas)}")


def _node_command(verb: str, done: str) -> click.Command:
    @click.command(verb, help=f"{verb.capitalize()} a node.")
    @click.argument("node", shell_complete=complete_nodes)
    @options.cluster_options
    def cmd(node: str) -> None:
        node = node.rpartition("/")[2]

        async def go(c: Client) -> Any:
            return await _call(c, verb, {"node": node}, "nodes", node)

        options.run(go)
        output.echo(f"node/{node} {done}")

    return cmd


cordon_cmd = _node_command("cordon", "cordoned")
cordon_cmd.help = "Mark a node unschedulable: no new replicas are placed on it."
uncordon_cmd = _node_command("uncordon", "uncordoned")
uncordon_cmd.help = "Mark a node schedulable again (also ends a drain)."
drain_cmd = _node_command("drain", "drained")
drain_cmd.help = "Cordon a node and move its replicas to other nodes."


# --- rollout -------------------------------------------------------------------------------------------------


@click.group("rollout")
def rollout_group() -> None:
    """Watch and manage rollouts of a service."""


def _duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


async def _status_row(c: Client, name: str, use_verb: list[bool]) -> dict[str, Any]:
    """The service's row, with ``rollout``/``reason``/``paused`` when the controller has ``rollout_status``."""
    if use_verb[0]:
        try:
            reply = await c.request_raw("rollout_status", {"name": name})
        except CliError:  # no responder for this verb: an older controller (or none: get_services says)
            reply = None
        if reply is not None and reply.ok and isinstance(reply.data, dict):
            return reply.data
        if reply is not None and reply.code == "not-found":
            raise not_found("services", name)
        if reply is not None and reply.code not in ("unsupported", ""):
            raise reply_error("rollout_status", reply)
        use_verb[0] = False
    rows = await _call(c, "get_services", {"name": name}, "services", name)
    rows = [r for r in rows or [] if r.get("name") == name]
    if not rows:
        raise not_found("services", name)
    return dict(rows[0])


def _progress(row: dict[str, Any]) -> str:
    total = row.get("replicas", 0)
    return f"{row.get('updated', 0)}/{row.get('ready', 0)}/{total} updated/ready/total"


@rollout_group.command("status")
@click.argument("name", shell_complete=complete_services)
@click.option(
    "--timeout",
    default="5m",
    show_default=True,
    callback=_duration,
    help="Give up (exit 1) after this long; 0 checks once.",
)
@click.option("-w", "--watch/--no-watch", default=True, help="Wait for the rollout to finish (default).")
@options.cluster_options
def rollout_status_cmd(name: str, timeout: float, watch: bool) -> None:
    """Wait for a service's rollout; exit 0 when complete, 1 when it failed, was rolled back or timed out."""
    name = _service_name(name)

    async def go(c: Client) -> tuple[bool, str]:
        deadline = time.monotonic() + timeout
        use_verb = [True]
        last = ""
        while True:
            row = await _status_row(c, name, use_verb)
            status = str(row.get("status") or "")
            replicas = int(row.get("replicas") or 0)
            rev = row.get("revision")
            reason = str(row.get("reason") or row.get("message") or "")
            # Complete is the controller's verdict (replicas ready for min_ready, the revision recorded as the
            # last good one an auto-rollback returns to), not only every replica ready at this instant.
            settled = row.get("rollout", "complete") == "complete"
            if status == "available" and row.get("updated") == row.get("ready") == replicas and settled:
                return True, f"service/{name} successfully rolled out (revision {rev}, {_progress(row)})"
            if status in ("failed", "rolled-back"):
                why = f": {reason}" if reason else ""
                if status == "failed":
                    return False, f"rollout of service/{name} revision {rev} failed{why}"
                return False, f"rollout of service/{name} was rolled back (now at revision {rev}){why}"
            line = f"Waiting for rollout of service/{name} (revision {rev}, {status}): {_progress(row)}"
            if row.get("paused"):
                line += " (paused)"
            if line != last:
                output.echo(line)
                last = line
            if not watch or time.monotonic() >= deadline:
                if not watch:
                    return False, f"rollout of service/{name} is not complete ({status})"
                return False, (
                    f"timed out after {timeout:g}s waiting for the rollout of service/{name} ({_progress(row)})"
                )
            await asyncio.sleep(min(POLL, max(0.0, deadline - time.monotonic())))

    ok, message = options.run(go)
    if not ok:
        raise CliError(message, code=EXIT_FAILED)
    output.echo(message)


@rollout_group.command("history")
@click.argument("name", shell_complete=complete_services)
@options.output_option(choices=("json", "yaml"))
@options.cluster_options
def rollout_history_cmd(name: str, fmt: str | None) -> None:
    """The revisions of a service: REVISION TIME CHANGE RESULT."""
    name = _service_name(name)

    async def go(c: Client) -> Any:
        try:
            return await c.call_new_verb("rollout_history", {"name": name}, "rollout history")
        except Unsupported:
            described = await _call(c, "describe_service", {"name": name}, "services", name)
            if isinstance(described, dict) and "history" in described:
                return described["history"]
            raise
        except CliError as exc:
            if any(line.endswith("not found") for line in exc.lines):
                raise not_found("services", name) from None
            raise

    history = options.run(go) or []
    if isinstance(history, dict):
        history = history.get("history", [])
    if fmt == "json":
        output.echo(output.to_json(history))
    elif fmt == "yaml":
        output.echo(output.to_yaml(history))
    else:
        output.echo(history_table(history))


@rollout_group.command("undo")
@click.argument("name", shell_complete=complete_services)
@click.option("--to-revision", type=click.IntRange(min=1), default=None, help="Go back to this revision.")
@options.cluster_options
def rollout_undo_cmd(name: str, to_revision: int | None) -> None:
    """Roll back to the previous (or a given) revision: its spec is stored as a new revision (as kubectl does);
    returns once the new desired revision is stored."""
    name = _service_name(name)

    async def go(c: Client) -> Any:
        # The client gives the request an id (every write gets one): a retried undo is not done twice.
        body = {"name": name, "to_revision": to_revision}
        return await _new_verb(c, "rollout_undo", body, "rollout undo")

    data = options.run(go) or {}
    rev = data.get("revision") if isinstance(data, dict) else None
    if isinstance(data, dict) and data.get("skipped"):
        # kubectl's wording: nothing was stored, the spec asked for is the desired one already.
        output.echo(f"service/{name} skipped rollback (current spec already matches revision {to_revision or rev})")
        return
    output.echo(f"service/{name} rolled back" + (f" (revision {rev})" if rev is not None else ""))
    if isinstance(data, dict) and data.get("paused"):
        output.warn(f"service/{name} is paused: the rollback rolls out after `drover rollout resume {name}`")


async def _new_verb(c: Client, verb: str, body: dict[str, Any], what: str) -> Any:
    return await c.call_new_verb(verb, body, what, timeout=30.0)


def _pause_command(verb: str, done: str) -> click.Command:
    @click.command(verb.split("_")[1])
    @click.argument("name", shell_complete=complete_services)
    @options.cluster_options
    def cmd(name: str) -> None:
        name = _service_name(name)

        async def go(c: Client) -> Any:
            return await _new_verb(c, verb, {"name": name}, f"rollout {verb.split('_')[1]}")

        options.run(go)
        output.echo(f"service/{name} {done}")

    return cmd


_pause = _pause_command("rollout_pause", "paused")
_pause.help = "Pause a service's rollout where it is."
_resume = _pause_command("rollout_resume", "resumed")
_resume.help = "Resume a paused rollout."
rollout_group.add_command(_pause)
rollout_group.add_command(_resume)


# --- endpoints / leader ----------------------------------------------------------------------------------------


async def endpoints_of(c: Client, name: str) -> list[dict[str, Any]]:
    """Ask any agent (``drover.<c>.endpoints``, queue group) for the gossip view; without agents, the
    controller's ``endpoints`` verb. An empty answer for an unknown service is 'not found'."""
    try:
        reply = await c.agent_subject_request(c.names.endpoints, {"service": name})
    except CliError:
        reply = None
    if reply is None:
        data = await _new_verb(c, "endpoints", {"name": name, "service": name}, "endpoints")
        rows = data.get("endpoints", []) if isinstance(data, dict) else data
    elif not reply.get("ok", False):
        raise CliError(f"endpoints: {reply.get('error') or 'the agent refused'}")
    else:
        rows = reply.get("endpoints") or []
    rows = [r for r in rows or [] if isinstance(r, dict) and r.get("service") == name]
    if not rows:
        await _call(c, "get_services", {"name": name}, "services", name)  # not found → exit 1
    return rows


@click.command("endpoints")
@click.argument("name", shell_complete=complete_services)
@options.output_option(choices=("json", "yaml", "wide"))
@options.cluster_options
def endpoints_cmd(name: str, fmt: str | None) -> None:
    """The ready endpoints of a service as the gossip layer sees them."""
    name = _service_name(name)

    async def go(c: Client) -> Any:
        return await endpoints_of(c, name)

    rows = options.run(go) or []
    if isinstance(rows, dict):
        rows = rows.get("endpoints", [])
    if fmt == "json":
        output.echo(output.to_json(rows))
    elif fmt == "yaml":
        output.echo(output.to_yaml(rows))
    elif not rows:
        output.warn(f"No endpoints of service {name}.")
    else:
        output.echo(
            output.table(
                ["SERVICE", "ENDPOINT", "NODE", "CONTAINER", "READY"],
                [
                    [r.get("service"), f"{r.get('address')}:{r.get('port')}", r.get("node"), r.get("container"),
                     "yes" if r.get("ready") else "no"]
                    for r in rows
                ],
            )
        )


@click.command("leader")
@options.output_option(choices=("json", "yaml"))
@options.cluster_options
def leader_cmd(fmt: str | None) -> None:
    """The controller currently leading: id, term, since."""

    async def go(c: Client) -> Any:
        return await c.call_new_verb("leader", {}, "leader")

    data = options.run(go) or {}
    if fmt == "json":
        output.echo(output.to_json(data))
    elif fmt == "yaml":
        output.echo(output.to_yaml(data))
    else:
        since = data.get("since")
        output.echo(
            output.table(
                ["ID", "TERM", "SINCE", "AGE"],
                [[data.get("id"), data.get("term"), output.clock(since), output.age(since)]],
            )
        )
