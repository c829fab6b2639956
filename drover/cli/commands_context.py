"""``drover context list|use|add|delete|current`` (named clusters) and ``drover completion bash|zsh|fish``.

Completion is click's: the script printed here calls ``drover`` back with ``_DROVER_COMPLETE`` set, and the
NAME/NODE arguments complete from the cluster of the current context (``complete_services`` /
``complete_nodes``: one quick request, nothing offered — never a traceback — when no cluster answers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

from drover.cli import output
from drover.cli.context import (
    DEFAULT_CONTEXT,
    ContextError,
    add_context,
    all_contexts,
    current_name,
    delete_context,
    normalize_url,
    use_context,
)
from drover.cli.errors import EXIT_INVALID, CliError

#: how long completion may wait for the cluster: a shell must never hang on <TAB>
COMPLETION_TIMEOUT = 1.5


def _invalid(exc: ContextError) -> CliError:
    return CliError(str(exc), code=EXIT_INVALID)


@click.group("context")
def context_group() -> None:
    """Named clusters: list, switch, add and delete contexts ('default' is the one 'drover up' writes)."""


@context_group.command("list")
@click.option("-o", "--output", "fmt", type=click.Choice(["json"]), default=None, help="Output format.")
def context_list(fmt: str | None) -> None:
    """List contexts; * marks the current one."""
    contexts = all_contexts()
    try:
        current = current_name()
    except ContextError as exc:
        raise _invalid(exc) from None
    if fmt == "json":
        rows = [{"name": n, "current": n == current, **v} for n, v in contexts.items()]
        output.echo(json.dumps(rows, indent=2))
        return
    # 'default' is listed before any 'drover up' wrote it: it is what commands use when nothing is chosen
    contexts = {DEFAULT_CONTEXT: {}, **contexts}
    # not output.table: an empty CURRENT cell stays blank (kubectl's look) instead of "-"
    rows_t = [("*" if n == current else "", n, str(v.get("nats") or "-")) for n, v in contexts.items()]
    width = max(len(n) for _, n, _ in rows_t) if rows_t else 4
    lines = [f"{'CURRENT':<9}{'NAME':<{width + 3}}NATS"]
    lines += [f"{mark:<9}{n:<{width + 3}}{url}" for mark, n, url in rows_t]
    output.echo("\n".join(lines))


@context_group.command("current")
def context_current() -> None:
    """Print the name of the current context."""
    output.echo(current_name())


@context_group.command("use")
@click.argument("name", shell_complete=lambda *_: [CompletionItem(n) for n in all_contexts()])
def context_use(name: str) -> None:
    """Make NAME the current context."""
    try:
        use_context(name)
    except ContextError as exc:
        raise _invalid(exc) from None
    output.echo(f'Switched to context "{name}".')


def _file(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise CliError(f"--{what} {value}: no such file", code=EXIT_INVALID)
    return str(path.resolve())


@context_group.command("add")
@click.argument("name")
@click.option("--nats", "nats_url", required=True, metavar="URL[,URL…]", help="NATS URL(s) of the cluster.")
@click.option("--creds", metavar="FILE", help="Credentials file for this cluster.")
@click.option("--ca", metavar="FILE", help="CA certificate (PEM) of this cluster's NATS servers.")
@click.option("--cluster", "cluster_name", metavar="NAME", help="drover cluster name on that NATS (default 'default').")
def context_add(name: str, nats_url: str, creds: str | None, ca: str | None, cluster_name: str | None) -> None:
    """Add (or replace) context NAME; the current context does not change."""
    try:
        entry: dict[str, Any] = {"nats": normalize_url(nats_url)}
    except ValueError:
        raise CliError("--nats: give at least one URL", code=EXIT_INVALID) from None
    for key, value in (("creds", _file(creds, "creds")), ("ca", _file(ca, "ca")), ("cluster", cluster_name)):
        if value:
            entry[key] = value
    try:
        new = add_context(name, entry)
    except ContextError as exc:
        raise _invalid(exc) from None
    output.echo(f"context/{name} {'added' if new else 'updated'}")


@context_group.command("delete")
@click.argument("name")
def context_delete(name: str) -> None:
    """Delete context NAME (the current one falls back to 'default')."""
    try:
        delete_context(name)
    except ContextError as exc:
        raise _invalid(exc) from None
    output.echo(f"context/{name} deleted")


# -- completion ------------------------------------------------------------------------------------------


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion_cmd(shell: str) -> None:
    """Print a shell completion script (bash, zsh or fish).

    Load it with `source <(drover completion bash)` (zsh: the same; fish: `drover completion fish | source`).
    """
    from click.shell_completion import get_completion_class

    from drover.cli.main import cli

    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - click knows all three
        raise CliError(f"no completion for {shell}", code=EXIT_INVALID)
    output.echo(cls(cli, {}, "drover", "_DROVER_COMPLETE").source())


def _names(verb: str, ctx: click.Context) -> list[str]:
    """Names from ``get_<verb>`` on the current cluster; [] on any failure or after COMPLETION_TIMEOUT."""
    import asyncio  # here: `get` imports this module for its completion callbacks, and must not load asyncio

    from drover.cli import client, options

    async def go() -> list[str]:
        async with client.Client(options.target(ctx)) as c:
            reply = await c.request_raw(verb, {"name": None}, timeout=COMPLETION_TIMEOUT)
        rows = reply.data if reply.ok and isinstance(reply.data, list) else []
        return sorted(str(r["name"]) for r in rows if isinstance(r, dict) and r.get("name"))

    async def bounded() -> list[str]:
        return await asyncio.wait_for(go(), COMPLETION_TIMEOUT)

    try:
        return asyncio.run(bounded())
    except BaseException:  # completion must never print a traceback or hang the shell
        return []


def complete_services(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(n) for n in _names("get_services", ctx) if n.startswith(incomplete)]


def complete_nodes(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(n) for n in _names("get_nodes", ctx) if n.startswith(incomplete)]


__all__ = ["DEFAULT_CONTEXT", "complete_nodes", "complete_services", "completion_cmd", "context_group"]


def complete_resource_name(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """NAME after ``get``/``describe services|nodes``: service or node names by the resource given."""
    resource = str(ctx.params.get("resource") or "")
    if resource.startswith("node"):
        return complete_nodes(ctx, param, incomplete)
    if resource.startswith(("service", "svc")):
        return complete_services(ctx, param, incomplete)
    return []
