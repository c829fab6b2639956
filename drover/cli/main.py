"""The ``drover`` command: a click group of client commands, the two daemons and ``drover up``.

Exit status: 0 ok; 1 the operation failed (timeout, controller said failed, cluster unreachable); 2 bad input
(usage, invalid manifest, controller said ``invalid``). Errors go to stderr as ``error: …`` lines.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import click

from drover import __version__
from drover.cli import options
from drover.cli.errors import CliError

# Every command as (module, attribute, the first paragraph of its help, from which `drover --help` makes the
# short help exactly as click would). A command's module is imported only when that command runs (or shows its
# own help), so `drover --help` and a mistyped command stay fast; tests/unit/cli/test_fast_cli.py checks that
# the text here is what the command itself says.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "agent": ("commands_daemons", "agent_cmd", "Run an agent for one node in the foreground (until SIGINT/SIGTERM)."),
    "apply": ("commands_apply", "apply_cmd", "Create or update services from manifests."),
    "chaos": (
        "commands_chaos", "chaos_cmd",
        "Inject faults into the local 'drover up' lab and check that drover survives them.",
    ),
    "completion": ("commands_context", "completion_cmd", "Print a shell completion script (bash, zsh or fish)."),
    "context": (
        "commands_context", "context_group",
        "Named clusters: list, switch, add and delete contexts ('default' is the one 'drover up' writes).",
    ),
    "convert": (
        "commands_convert", "convert_cmd",
        "Print the drover manifests equivalent to Kubernetes or Compose files (nothing is applied).",
    ),
    "controller": ("commands_daemons", "controller_cmd", "Run a controller in the foreground (until SIGINT/SIGTERM)."),
    "credentials": (
        "commands_security", "credentials_group",
        "Credentials for a role (agent NODE, controller, client), and the cluster's keys and CA.",
    ),
    "cordon": ("commands_ops", "cordon_cmd", "Mark a node unschedulable: no new replicas are placed on it."),
    "delete": (
        "commands_apply", "delete_cmd",
        "Delete services: `delete -f FILE` or `delete service NAME...`. Their containers stop.",
    ),
    "diff": (
        "commands_plan", "diff_cmd",
        "Show what `apply -f` would change, as a unified diff (exit 0 none, 1 some, 2 error).",
    ),
    "describe": (
        "commands_get", "describe_cmd", "Show a service or node in detail: spec, status, containers, recent events."
    ),
    "drain": ("commands_ops", "drain_cmd", "Cordon a node and move its replicas to other nodes."),
    "endpoints": ("commands_ops", "endpoints_cmd", "The ready endpoints of a service as the gossip layer sees them."),
    "events": ("commands_events", "events_cmd", "Cluster events, newest last."),
    "get": ("commands_get", "get_cmd", "List services, containers or nodes (a table, or -o json|yaml)."),
    "leader": ("commands_ops", "leader_cmd", "The controller currently leading: id, term, since."),
    "logs": ("commands_events", "logs_cmd", "Logs of a service's containers, each line prefixed by [container]."),
    "rollout": ("commands_ops", "rollout_group", "Watch and manage rollouts of a service."),
    "scale": (
        "commands_ops", "scale_cmd",
        "Set the number of replicas of a service (turns autoscaling off until the next apply).",
    ),
    "secret": (
        "commands_secret", "secret_group",
        "Secrets for `files` entries: create, list, delete (values are never shown).",
    ),
    "snapshot": (
        "commands_snapshot", "snapshot_group",
        "Save all desired state to a file, or restore it (services, revisions, secrets encrypted, node controls).",
    ),
    "uncordon": ("commands_ops", "uncordon_cmd", "Mark a node schedulable again (also ends a drain)."),
    "up": (
        "up", "up_cmd",
        "Run an all-in-one cluster in the foreground: nats-server(s), controller(s) and local agents, each a child "
        "process restarted about 1 s after it dies.",
    ),
}


def _error(line: str) -> None:
    click.echo(f"error: {line}", err=True)


# click's own shortening (public name deprecated in click 8.2, private one absent before it).
_short_help: Any = getattr(click.utils, "_make_default_short_help", None) or click.utils.make_default_short_help


class DroverGroup(click.Group):
    """Reports errors as ``error: …`` lines with drover's exit codes instead of click's usage dump; loads each
    command's module on first use (``COMMANDS``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attr, _ = COMMANDS[cmd_name]
            self.add_command(getattr(importlib.import_module(f"drover.cli.{module}"), attr), cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as exc:  # suggest from every command, loaded or not
            raise click.exceptions.NoSuchCommand(
                click.utils.make_str(args[0]), possibilities=self.list_commands(ctx), ctx=exc.ctx
            ) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's command list (same short help, same truncation), made from ``COMMANDS`` without importing
        any command module."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            loaded = self.commands.get(name)
            if loaded is not None:
                rows.append((name, loaded.get_short_help_str(limit)))
            else:
                rows.append((name, _short_help(COMMANDS[name][2], limit).strip()))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``drover``) and ``python -m drover``."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="drover")


if __name__ == "__main__":
    main()
