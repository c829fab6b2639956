"""``drover chaos``: faults on a seeded schedule against the ``drover up`` lab of the current context,
then the invariants checked; a JSON report (``--report``) and a readable summary. Exit 0 passed, 1 not,
2 bad flags."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import click

from drover.cli import options, output
from drover.cli.client import EXIT_FAILED, CliError
from drover.shared.units import parse_duration


def _duration(_ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        seconds = float(parse_duration(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise click.BadParameter("must be more than 0s")
    return seconds


def _faults(_ctx: click.Context, _param: click.Parameter, value: str) -> list[str]:
    from drover.chaos.schedule import KINDS, parse_kinds

    kinds, unknown = parse_kinds(value)
    if unknown:
        raise click.BadParameter(f"unknown fault {', '.join(map(repr, unknown))} (known: {', '.join(KINDS)}, all)")
    return kinds


@click.command("chaos")
@click.option("--duration", default="60s", show_default=True, callback=_duration, help="How long faults go on.")
@click.option("--seed", type=int, default=None, help="Seed of the fault schedule (default: random, printed).")
@click.option(
    "--faults", default="all", show_default=True, callback=_faults, metavar="LIST",
    help="Comma-separated: agent-kill, controller-kill, nats-kill, partition, gossip-partition, container-kill, "
    "pause (or all).",
)
@click.option("--interval", default="5s", show_default=True, callback=_duration, help="Time between faults.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the JSON here.")
@options.cluster_options
def chaos_cmd(duration: float, seed: int | None, faults: list[str], interval: float, report: Path | None) -> None:
    """Inject faults into the local 'drover up' lab and check that drover survives them."""
    from drover.chaos.report import report_json, summary
    from drover.chaos.runner import ChaosOptions, Outcome, Run, load_state
    from drover.cli.context import drover_home
    from drover.cli.lab import STATE_FILE
    from drover.cli.signals import run_until_signal

    if seed is None:
        seed = random.SystemRandom().randrange(1, 2**31)
    target = options.target()
    state = load_state(drover_home() / STATE_FILE, target.cluster)
    state()  # no lab: say so before anything starts
    opts = ChaosOptions(duration=duration, seed=seed, kinds=faults, interval=interval)
    output.echo(f"chaos: seed {seed}, {duration:g}s, faults {', '.join(faults)}, every {interval:g}s")

    async def main() -> Outcome:
        import aiodocker

        docker = aiodocker.Docker()
        try:
            return await Run(opts, target, state).run(docker)
        finally:
            await docker.close()

    try:
        outcome = asyncio.run(run_until_signal(main()))
    except CliError:
        raise
    except Exception as exc:
        raise CliError(f"chaos failed: {exc}", code=EXIT_FAILED) from exc
    if outcome is None:
        raise CliError("chaos interrupted: every fault was undone and its service removed", code=EXIT_FAILED)
    data: dict[str, Any] = report_json(seed, duration, outcome.faults, outcome.checks)
    if report is not None:
        report.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    for line in summary(seed, duration, outcome.faults, outcome.checks, outcome.notes):
        output.echo(line)
    if not data["passed"]:
        raise SystemExit(1)


__all__ = ["chaos_cmd"]
