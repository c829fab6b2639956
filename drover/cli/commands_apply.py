"""``drover apply`` and ``drover delete``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from drover.cli import options, output
from drover.cli.applycore import (  # the click-free part (also run by cli/entry.py); the names are used here too
    apply_files,
    load_manifests,
    read_sources,
    unchecked_documents,
    validate_sources,
)
from drover.cli.errors import EXIT_FAILED, CliError, reply_error

if TYPE_CHECKING:
    from drover.cli.client import Client  # the client (asyncio, nats) loads only when a command runs

__all__ = ["apply_cmd", "delete_cmd", "files_option", "load_manifests", "read_sources", "unchecked_documents",
           "validate_sources"]

SERVICE_WORDS = ("service", "services", "svc")


#: ``-f FILE`` (repeatable) of every command that reads manifests
files_option = click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    metavar="FILE",
    help="Manifest file (drover, Kubernetes Deployment+Service or Compose), directory of manifests, "
    "or - for stdin (repeatable).",
)


@click.command("apply")
@files_option
@click.option("--dry-run", is_flag=True, help="Show what would be created or configured, and where; store nothing.")
@click.option(
    "--if-revision", type=click.IntRange(min=0), default=None, metavar="N",
    help="Apply only if the stored revision is N (0: only if the service does not exist yet).",
)
@options.cluster_options
def apply_cmd(files: tuple[str, ...], dry_run: bool, if_revision: int | None) -> None:
    """Create or update services from manifests."""
    if dry_run:
        from drover.cli.commands_plan import preview, print_dry_run

        print_dry_run(preview(files, placements=True, if_revision=if_revision))
        return
    for line in apply_files(files, if_revision, options.target):
        output.echo(line)


@click.command("delete")
@click.option(
    "-f", "--filename", "files", multiple=True, metavar="FILE", help="Delete the services of these manifests."
)
@click.argument("args", nargs=-1, metavar="[service NAME...]")
@options.cluster_options
def delete_cmd(files: tuple[str, ...], args: tuple[str, ...]) -> None:
    """Delete services: `delete -f FILE` or `delete service NAME...`. Their containers stop."""
    names: list[str] = []
    if files:
        if args:
            raise click.UsageError("give either -f FILE or 'service NAME...', not both")
        manifests, _ = load_manifests(files)
        names = [m.name for m in manifests]
    else:
        if not args:
            raise click.UsageError("nothing to delete: give -f FILE or 'service NAME...'")
        kind, *rest = args
        if kind.lower() not in SERVICE_WORDS:
            if "/" in kind:  # kubectl style service/web
                rest = list(args)
            else:
                raise click.UsageError(f"unknown resource type {kind!r}: only 'service' can be deleted")
        for n in rest:
            k, _, v = n.rpartition("/")
            if k and k.lower() not in SERVICE_WORDS:
                raise click.UsageError(f"unknown resource type {k!r}: only 'service' can be deleted")
            names.append(v)
        if not names:
            raise click.UsageError("give the name of the service(s) to delete")
    names = list(dict.fromkeys(names))

    async def go(c: Client) -> Any:
        reply = await c.request_raw("delete", {"names": names}, timeout=30.0)
        if not reply.ok and reply.code != "not-found":
            raise reply_error("delete", reply)
        return reply

    reply = options.run(go)
    results = (reply.data or {}).get("results") if isinstance(reply.data, dict) else None
    if not results:
        results = [{"name": n, "action": "not-found" if not reply.ok else "deleted"} for n in names]
    missing = []
    for r in results:
        if r.get("action") == "deleted":
            output.echo(f"service/{r.get('name')} deleted")
        else:
            missing.append(f'service "{r.get("name")}" not found')
    if missing:
        raise CliError(*missing, code=EXIT_FAILED)
