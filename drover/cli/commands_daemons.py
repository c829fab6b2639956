"""``drover controller`` and ``drover agent``: run one daemon in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from typing import Any

import click

from drover.cli.client import EXIT_FAILED, CliError
from drover.cli.signals import run_until_signal
from drover.shared.subjects import check_cluster
from drover.shared.units import parse_cpu, parse_duration, parse_memory

LOG_LEVELS = click.Choice(["debug", "info", "warning", "error"], case_sensitive=False)


def _parsed(parse: Any) -> Any:
    def callback(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return callback


def _cluster(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return check_cluster(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _labels(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in value:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise click.BadParameter(f"{item!r}: expected key=value")
        labels[k.strip()] = v.strip()
    return labels


def _run_daemon(what: str, main: Coroutine[Any, Any, None]) -> None:
    from drover.shared.loop import install_fast_loop

    install_fast_loop()
    try:
        asyncio.run(run_until_signal(main))
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        raise CliError(f"{what} stopped: {exc}", code=EXIT_FAILED) from exc


def _configure_logs(level: str) -> None:
    from drover.shared.log import configure

    configure(json=True, level=level)


@click.command("controller")
@click.option("--nats", "nats_url", envvar="DROVER_NATS", required=True, metavar="URL", help="NATS URL ($DROVER_NATS).")
@click.option("--id", "ident", metavar="ID", default=None, help="Controller id (default: <hostname>-<random>).")
@click.option("--cluster", envvar="DROVER_CLUSTER", default="default", show_default=True, callback=_cluster)
@click.option(
    "--node-grace", default="3s", show_default=True, callback=_parsed(parse_duration),
    help="A node without heartbeat this long is lost.",
)
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None, help="Serve Prometheus metrics here.")
@click.option("--metrics-address", default="127.0.0.1", show_default=True)
@click.option("--log-level", type=LOG_LEVELS, default="info", show_default=True)
def controller_cmd(
    nats_url: str,
    ident: str | None,
    cluster: str,
    node_grace: float,
    metrics_port: int | None,
    metrics_address: str,
    log_level: str,
) -> None:
    """Run a controller in the foreground (until SIGINT/SIGTERM)."""
    from drover.cli.context import normalize_url
    from drover.controller.config import ControllerConfig
    from drover.controller.main import run_controller

    _configure_logs(log_level)
    cfg = ControllerConfig(
        nats_url=normalize_url(nats_url),
        cluster=cluster,
        id=ident,
        node_grace=node_grace,
        metrics_port=metrics_port,
        metrics_address=metrics_address,
    )
    _run_daemon("controller", run_controller(cfg))


@click.command("agent")
@click.option("--nats", "nats_url", envvar="DROVER_NATS", required=True, metavar="URL", help="NATS URL ($DROVER_NATS).")
@click.option("--node", default=None, metavar="NAME", help="Node name (default: the host name).")
@click.option("--label", "labels", multiple=True, metavar="K=V", callback=_labels, help="Node label (repeatable).")
@click.option("--address", default="127.0.0.1", show_default=True, help="Where ports are published and proxied.")
@click.option("--driver", type=click.Choice(["docker", "process", "sim"]), default="docker", show_default=True)
@click.option("--cpu", default=None, callback=_parsed(parse_cpu), help="CPU offered for placement (default: host's).")
@click.option("--memory", default=None, callback=_parsed(parse_memory), help="Memory offered (default: host's).")
@click.option("--cluster", envvar="DROVER_CLUSTER", default="default", show_default=True, callback=_cluster)
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None, help="Serve Prometheus metrics here.")
@click.option("--metrics-address", default="127.0.0.1", show_default=True)
@click.option(
    "--proxy-strategy", type=click.Choice(["round-robin", "least-conn"]), default="round-robin", show_default=True,
    help="How the per-node proxy picks an endpoint.",
)
@click.option("--dns-port", type=click.IntRange(0, 65535), default=None,
              help="Answer DNS for <service>.drover on --address at this UDP port (0: a free one; default: off).")
@click.option("--gossip-key", envvar="DROVER_GOSSIP_KEY", default=None, metavar="HEX",
              help="Cluster gossip key, hex (default: fetched from the cluster's KV store).")
@click.option("--nats-source", default=None, metavar="ADDR",
              help="Local address the NATS connections leave from (default: the kernel's choice).")
@click.option("--remove-on-stop", is_flag=True, help="Remove this node's containers when the agent stops.")
@click.option("--log-level", type=LOG_LEVELS, default="info", show_default=True)
def agent_cmd(
    nats_url: str,
    node: str | None,
    labels: dict[str, str],
    address: str,
    driver: str,
    cpu: float | None,
    memory: int | None,
    cluster: str,
    metrics_port: int | None,
    metrics_address: str,
    proxy_strategy: str,
    gossip_key: str | None,
    dns_port: int | None,
    nats_source: str | None,
    remove_on_stop: bool,
    log_level: str,
) -> None:
    """Run an agent for one node in the foreground (until SIGINT/SIGTERM)."""
    from drover.agent.config import AgentConfig
    from drover.agent.main import run_agent
    from drover.cli.context import normalize_url

    _configure_logs(log_level)
    cfg = AgentConfig(
        nats_url=normalize_url(nats_url),
        node=node or socket.gethostname().split(".")[0] or "node",
        cluster=cluster,
        address=address,
        labels=labels,
        driver=driver,
        cpu=cpu,
        memory=memory,
        metrics_port=metrics_port,
        metrics_address=metrics_address,
        proxy_strategy=proxy_strategy,
        gossip_key=_hex_key(gossip_key),
        dns_port=dns_port,
        nats_source=nats_source,
    )
    _run_daemon("agent", run_agent(cfg, remove_containers=remove_on_stop))


def _hex_key(value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        key = bytes.fromhex(value)
    except ValueError:
        raise click.BadParameter("must be hexadecimal", param_hint="'--gossip-key'") from None
    if len(key) < 16:
        raise click.BadParameter("must be at least 16 bytes (32 hex digits)", param_hint="'--gossip-key'")
    return key


__all__ = ["agent_cmd", "controller_cmd"]
