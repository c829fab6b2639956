"""``drover snapshot save FILE`` and ``drover snapshot restore FILE [--key FILE]``.

The file is JSON (``{"format": "drover-snapshot", "version": 1, ...}``) written readable by its owner only:
it holds every service with its revision history, every secret still encrypted, and the nodes' controls.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from drover.cli import options, output
from drover.cli.client import EXIT_INVALID, Client, CliError


@click.group("snapshot")
def snapshot_group() -> None:
    """Save all desired state to a file, or restore it (services, revisions, secrets encrypted, node controls)."""


@snapshot_group.command("save")
@click.argument("file", metavar="FILE")
@options.cluster_options
def save_cmd(file: str) -> None:
    """Write a snapshot of the cluster's desired state to FILE (- for stdout)."""

    async def go(c: Client) -> Any:
        return await c.call_new_verb("snapshot_save", {}, "snapshots", timeout=30.0)

    doc = options.run(go) or {}
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if file == "-":
        click.echo(text, nl=False)
        return
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise CliError(f"{file}: {exc.strerror or exc}") from None
    counts = f"{len(doc.get('services') or [])} service(s), {len(doc.get('secrets') or [])} secret(s)"
    output.echo(f"snapshot saved to {file}: {counts}")


@snapshot_group.command("restore")
@click.argument("file", metavar="FILE")
@click.option("--key", "key_file", default=None, metavar="FILE",
              help="The secret key of the cluster the snapshot came from (for its secrets).")
@options.cluster_options
def restore_cmd(file: str, key_file: str | None) -> None:
    """Restore a snapshot into this cluster (services and secrets of the same names are replaced)."""
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
        doc = json.loads(text)
    except OSError as exc:
        raise CliError(f"{file}: {exc.strerror or exc}", code=EXIT_INVALID) from None
    except ValueError as exc:
        raise CliError(f"{file}: not a drover snapshot (invalid JSON: {exc})", code=EXIT_INVALID) from None
    if not isinstance(doc, dict) or doc.get("format") != "drover-snapshot":
        raise CliError(f"{file}: not a drover snapshot", code=EXIT_INVALID)
    body: dict[str, Any] = {"snapshot": doc}
    if key_file is not None:
        from drover.shared.secretbox import SecretKeyError, read_key

        try:
            body["key"] = read_key(Path(key_file))
        except SecretKeyError as exc:
            raise CliError(str(exc), code=EXIT_INVALID) from None

    async def go(c: Client) -> Any:
        return await c.call_new_verb("snapshot_restore", body, "snapshots", timeout=60.0)

    result = options.run(go) or {}
    output.echo(f"restored {len(result.get('services') or [])} service(s), {len(result.get('secrets') or [])} "
                f"secret(s), {len(result.get('node_controls') or [])} node control(s) from {file}")
