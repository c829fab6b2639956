"""The ``drover`` command: a click group of client commands, the two daemons and ``drover up``.

Exit status: 0 ok; 1 the operation failed (timeout, controller said failed, cluster unreachable); 2 bad input
(usage, invalid manifest, controller said ``invalid``). Errors go to stderr as ``error: …`` lines.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from drover import __version__
from drover.cli import options
from drover.cli.client import CliError


def _error(line: str) -> None:
    click.echo(f"error: {line}", err=True)


class DroverGroup(click.Group):
    """Reports errors as ``error: …`` lines with drover's exit codes instead of click's usage dump."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError" and exc.ctx is not None:
                click.echo(exc.ctx.get_help())
                sys.exit(0)
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            _error(f"{exc.format_message()}{hint}")
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            _error(exc.format_message())
            sys.exit(exc.exit_code)
        except CliError as exc:
            for line in exc.lines or ["failed"]:
                _error(line)
            sys.exit(exc.code)
        except click.Abort:
            _error("interrupted")
            sys.exit(130)
        except KeyboardInterrupt:
            sys.exit(130)
        except BrokenPipeError:
            sys.exit(0)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=DroverGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "--version", prog_name="drover")
@options.cluster_options
def cli() -> None:
    """drover: a container orchestrator (controller + agents over NATS, containers through Docker)."""


def _register() -> None:
    from drover.cli import (
        commands_apply,
        commands_chaos,
        commands_daemons,
        commands_events,
        commands_get,
        commands_ops,
        up,
    )

    for cmd in (
        commands_apply.apply_cmd,
        commands_apply.delete_cmd,
        commands_get.get_cmd,
        commands_get.describe_cmd,
        commands_ops.scale_cmd,
        commands_ops.cordon_cmd,
        commands_ops.uncordon_cmd,
        commands_ops.drain_cmd,
        commands_ops.rollout_group,
        commands_ops.endpoints_cmd,
        commands_ops.leader_cmd,
        commands_events.events_cmd,
        commands_events.logs_cmd,
        commands_daemons.controller_cmd,
        commands_daemons.agent_cmd,
        up.up_cmd,
        commands_chaos.chaos_cmd,
    ):
        cli.add_command(cmd)


_register()


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``drover``) and ``python -m drover``."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="drover")


if __name__ == "__main__":
    main()
