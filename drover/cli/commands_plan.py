"""Plan before apply: ``drover diff -f`` and the printing of ``drover apply --dry-run``.

Both ask the controller's ``preview`` verb, which stores nothing. ``diff`` prints a unified diff of each
service as stored against the manifest, both normalised by the controller (defaults filled in), and exits as
``kubectl diff`` does: 0 no differences, 1 differences, 2 bad input or any other error (so a script never
mistakes a failure for "there are changes").
"""

from __future__ import annotations

import difflib
import sys
from typing import TYPE_CHECKING, Any

import click

from drover.cli import options, output
from drover.cli.errors import EXIT_INVALID, CliError

if TYPE_CHECKING:
    from drover.cli.client import Client  # the client (asyncio, nats) loads only when a command runs


def _yaml(doc: dict[str, Any] | None) -> list[str]:
    if doc is None:
        return []
    import yaml

    return yaml.safe_dump(doc, sort_keys=True, default_flow_style=False, allow_unicode=True).splitlines(keepends=True)


def unified(result: dict[str, Any]) -> str:
    """The unified diff of one preview result (empty when stored and desired are equal)."""
    name = result.get("name")
    stored, desired = result.get("stored"), result.get("desired")
    if stored == desired:
        return ""
    before = f"service/{name} (stored, revision {result.get('revision')})" if stored is not None else "/dev/null"
    lines = difflib.unified_diff(_yaml(stored), _yaml(desired), fromfile=before, tofile=f"service/{name} (manifest)")
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def preview(files: tuple[str, ...], *, placements: bool, if_revision: int | None = None) -> list[dict[str, Any]]:
    from drover.cli.commands_apply import load_manifests

    manifests, where = load_manifests(files)
    body: dict[str, Any] = {
        "manifests": [m.model_dump(mode="json") for m in manifests],
        "sources": where,
        "placements": placements,
    }
    if if_revision is not None:
        body["if_revision"] = if_revision

    async def go(c: Client) -> Any:
        return await c.call_new_verb("preview", body, "diff / dry run", timeout=30.0)

    data = options.run(go)
    results = (data or {}).get("results", [])
    return [r for r in results if isinstance(r, dict)]


def print_dry_run(results: list[dict[str, Any]]) -> None:
    for r in results:
        output.echo(f"service/{r.get('name')} {r.get('action')} (dry run)")
        nodes = [str(n) for n in r.get("placements") or []]
        if nodes:
            counts: dict[str, int] = {}
            for n in nodes:
                counts[n] = counts.get(n, 0) + 1
            where = ", ".join(f"{n} (x{k})" if k > 1 else n for n, k in counts.items())
            output.echo(f"  new replicas would go to: {where}")


@click.command("diff")
@click.option(
    "-f", "--filename", "files", multiple=True, required=True, metavar="FILE",
    help="Manifest file, directory of manifests, or - for stdin (repeatable).",
)
@options.cluster_options
def diff_cmd(files: tuple[str, ...]) -> None:
    """Show what `apply -f` would change, as a unified diff (exit 0 none, 1 some, 2 error)."""
    try:
        results = preview(files, placements=False)
    except CliError as exc:
        raise CliError(*exc.lines, code=EXIT_INVALID) from None
    text = "".join(unified(r) for r in results)
    if text:
        click.echo(text, nl=False)
        sys.exit(1)
