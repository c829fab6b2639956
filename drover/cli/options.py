"""Options every client command takes (``--nats``, ``--cluster``) and helpers shared by the command groups."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from drover.cli.call import checked_target
from drover.cli.context import Target
from drover.shared.subjects import check_cluster

if TYPE_CHECKING:
    from drover.cli import client
    from drover.cli.reply import Reply

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

_NATS = "drover.nats"
_CLUSTER = "drover.cluster"
_CONTEXT = "drover.context"
_CREDS = "drover.creds"
_CA = "drover.ca"


def _store(key: str) -> Callable[[click.Context, click.Parameter, str | None], str | None]:
    def store(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        if value:
            ctx.meta[key] = value
        return value

    return store


def _store_cluster(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value:
        try:
            check_cluster(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        ctx.meta[_CLUSTER] = value
    return value


def _complete_context(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
    from click.shell_completion import CompletionItem

    from drover.cli.context import all_contexts

    names = dict.fromkeys(["default", *all_contexts()])
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def cluster_options(f: F) -> F:
    """``--nats URL``, ``--cluster NAME``, ``--context NAME``, ``--creds FILE`` and ``--ca FILE`` (also
    accepted before the command name)."""
    f = click.option(
        "--ca", metavar="FILE", expose_value=False, is_eager=True, callback=_store(_CA),
        help="The cluster CA's PEM for TLS (else $DROVER_CA, else the context's).",
    )(f)
    f = click.option(
        "--creds", metavar="FILE", expose_value=False, is_eager=True, callback=_store(_CREDS),
        help="NATS credentials file (else $DROVER_CREDS, else the context's).",
    )(f)
    f = click.option(
        "--context",
        metavar="NAME",
        expose_value=False,
        is_eager=True,
        callback=_store(_CONTEXT),
        shell_complete=_complete_context,
        help="Named context to use (else $DROVER_CONTEXT, else the current one; see 'drover context').",
    )(f)
    f = click.option(
        "--cluster",
        metavar="NAME",
        expose_value=False,
        is_eager=True,
        callback=_store_cluster,
        help="Cluster name (else $DROVER_CLUSTER, else the context file, else 'default').",
    )(f)
    f = click.option(
        "--nats",
        metavar="URL",
        expose_value=False,
        is_eager=True,
        callback=_store(_NATS),
        help="NATS URL of the cluster (else $DROVER_NATS, else $DROVER_HOME/context.json, "
        "else nats://127.0.0.1:4222).",
    )(f)
    return f


def target(ctx: click.Context | None = None) -> Target:
    """The cluster of the current command (or of ``ctx``, e.g. during shell completion)."""
    ctx = ctx or click.get_current_context()
    return checked_target(
        ctx.meta.get(_NATS), ctx.meta.get(_CLUSTER), ctx.meta.get(_CONTEXT),
        creds_opt=ctx.meta.get(_CREDS), ca_opt=ctx.meta.get(_CA),
    )


def run(fn: Callable[[client.Client], Awaitable[T]], *, keep_reconnecting: bool = False) -> T:
    """Run ``fn`` with a client connected to the current command's cluster."""
    from drover.cli import client  # asyncio and the NATS client load only for commands that connect

    return client.run(target(), fn, keep_reconnecting=keep_reconnecting)


def request(verb: str, body: dict[str, Any], timeout: float) -> Reply:
    """The controller's reply to one request of the current command (``call.request``: the lean path first)."""
    from drover.cli import call

    return call.request(target(), verb, body, timeout)


def output_option(*, choices: tuple[str, ...] = ("wide", "json", "yaml", "name")) -> Callable[[F], F]:
    return click.option(
        "-o",
        "--output",
        "fmt",
        type=click.Choice(list(choices), case_sensitive=False),
        default=None,
        help="Output format: " + ", ".join(choices) + " (default: a table).",
    )
