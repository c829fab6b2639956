"""``drover up``: an embedded all-in-one cluster (placeholder until implemented)."""

from __future__ import annotations

import click


@click.command("up")
def up_cmd() -> None:
    """Run nats-server, a controller and local agents in the foreground."""
    raise click.UsageError("not implemented yet")
