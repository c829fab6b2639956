"""``drover secret create|list|delete``: secrets for a service's ``files``.

The bytes go to the controller in one request (over the cluster's TLS connection), which encrypts them
before they reach the KV store; nothing prints them back. ``--from-literal V`` gives exactly V (no newline
added); ``--from-file F`` gives F's bytes as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from drover.cli import options, output
from drover.cli.errors import EXIT_INVALID, CliError

if TYPE_CHECKING:
    from drover.cli.client import Client  # the client (asyncio, nats) loads only when a command runs

MAX_SECRET = 512 * 1024


@click.group("secret")
def secret_group() -> None:
    """Secrets for `files` entries: create, list, delete (values are never shown)."""


@secret_group.command("create")
@click.argument("name")
@click.option("--from-file", "from_file", metavar="FILE", default=None, help="The secret is this file's bytes.")
@click.option("--from-literal", "literal", metavar="VALUE", default=None, help="The secret is VALUE (no newline).")
@options.cluster_options
def create_cmd(name: str, from_file: str | None, literal: str | None) -> None:
    """Create a secret (or give an existing one new content: services using it roll out)."""
    from drover.shared.workloads import secret_name

    try:
        secret_name(name)
    except ValueError as exc:
        raise CliError(f"secret name {name!r}: {exc}", code=EXIT_INVALID) from None
    if (from_file is None) == (literal is None):
        raise CliError("give exactly one of --from-file FILE or --from-literal VALUE", code=EXIT_INVALID)
    if literal is not None:
        data = literal.encode()
    else:
        assert from_file is not None
        try:
            data = Path(from_file).read_bytes()
        except OSError as exc:
            raise CliError(f"{from_file}: {exc.strerror or exc}", code=EXIT_INVALID) from None
    if len(data) > MAX_SECRET:
        raise CliError(f"secret {name}: {len(data)} bytes is over the {MAX_SECRET // 1024} KiB limit",
                       code=EXIT_INVALID)

    async def go(c: Client) -> Any:
        return await c.call_new_verb("secret_create", {"name": name, "data": data}, "secrets")

    result = options.run(go) or {}
    output.echo(f"secret/{name} {result.get('action', 'created')}")


@secret_group.command("list")
@options.output_option(choices=("json", "yaml"))
@options.cluster_options
def list_cmd(fmt: str | None) -> None:
    """The secrets: NAME VERSION SIZE USED-BY UPDATED (never their values)."""

    async def go(c: Client) -> Any:
        return await c.call_new_verb("secret_list", {}, "secrets")

    rows = [r for r in options.run(go) or [] if isinstance(r, dict)]
    for r in rows:
        for key in ("created", "updated"):
            r[key] = output.iso(r.get(key))
    if fmt == "json":
        output.echo(output.to_json(rows))
        return
    if fmt == "yaml":
        output.echo(output.to_yaml(rows))
        return
    table = [
        (r.get("name"), r.get("version"), r.get("size"), ",".join(r.get("used_by") or []) or "-", r.get("updated"))
        for r in rows
    ]
    output.echo(output.table(("NAME", "VERSION", "SIZE", "USED-BY", "UPDATED"), table))


@secret_group.command("delete")
@click.argument("name")
@options.cluster_options
def delete_cmd(name: str) -> None:
    """Delete a secret no service uses."""

    async def go(c: Client) -> Any:
        return await c.call_new_verb("secret_delete", {"name": name}, "secrets")

    options.run(go)
    output.echo(f"secret/{name} deleted")
