"""``drover controller`` and ``drover agent``: run one daemon in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Coroutine
from typing import Any

import click

from drover.cli import natsload
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


def _nats_urls(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """``--nats``/``DROVER_NATS``: one URL or a comma-separated list, normalised (``host:port`` → nats://)."""
    from drover.shared.natsurls import join_urls

    try:
        return join_urls(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _configure_logs(level: str) -> None:
    from drover.shared.log import configure

    configure(json=True, level=level)


@click.command("controller")
@click.option("--nats", "nats_url", envvar="DROVER_NATS", required=True, metavar="URL[,URL…]", callback=_nats_urls,
              help="NATS URL or comma-separated URLs ($DROVER_NATS).")
@click.option("--id", "ident", metavar="ID", default=None, help="Controller id (default: <hostname>-<random>).")
@click.option("--creds", envvar="DROVER_CREDS", default=None, metavar="FILE",
              help="NATS credentials (or nkey seed) file ($DROVER_CREDS); without it the connection is anonymous.")
@click.option("--ca", envvar="DROVER_CA", default=None, metavar="FILE",
              help="The cluster CA's PEM ($DROVER_CA): TLS to NATS; without it the connection is plain.")
@click.option("--cluster", envvar="DROVER_CLUSTER", default="default", show_default=True, callback=_cluster)
@click.option(
    "--node-grace", default="3s", show_default=True, callback=_parsed(parse_duration),
    help="A node without heartbeat this long is lost.",
)
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None, help="Serve Prometheus metrics here.")
@click.option("--metrics-address", default="127.0.0.1", show_default=True)
@click.option(
    "--ui-port", type=click.IntRange(0, 65535), default=None, help="Serve the read-only web dashboard here (0: any)."
)
@click.option("--ui-address", default="127.0.0.1", show_default=True, help="Address the dashboard listens on.")
@click.option(
    "--ui-actions", is_flag=True,
    help="Offer scale, undo and cordon on the dashboard, each confirmed and run with the user's own credentials.",
)
@click.option("--log-level", type=LOG_LEVELS, default="info", show_default=True)
@click.option(
    "--allow-privileged-mounts", is_flag=True, envvar="DROVER_ALLOW_PRIVILEGED_MOUNTS",
    help="Let services mount the host's / or the Docker socket ($DROVER_ALLOW_PRIVILEGED_MOUNTS).",
)
def controller_cmd(
    nats_url: str,
    ident: str | None,
    creds: str | None,
    ca: str | None,
    cluster: str,
    node_grace: float,
    metrics_port: int | None,
    metrics_address: str,
    ui_port: int | None,
    ui_address: str,
    ui_actions: bool,
    log_level: str,
    allow_privileged_mounts: bool,
) -> None:
    """Run a controller in the foreground (until SIGINT/SIGTERM)."""
    natsload.load_daemon(nats_url)  # first: what a daemon imports first decides what its start costs
    from drover.controller.config import ControllerConfig
    from drover.controller.main import run_controller

    _configure_logs(log_level)
    cfg = ControllerConfig(
        nats_url=nats_url,
        cluster=cluster,
        creds=_readable(creds, "--creds"),
        ca=_readable(ca, "--ca"),
        id=ident,
        node_grace=node_grace,
        metrics_port=metrics_port,
        metrics_address=metrics_address,
        ui_port=ui_port,
        ui_address=ui_address,
        ui_actions=ui_actions,
        allow_privileged_mounts=allow_privileged_mounts,
    )
    _run_daemon("controller", run_controller(cfg))


@click.command("agent")
@click.option("--nats", "nats_url", envvar="DROVER_NATS", required=True, metavar="URL[,URL…]", callback=_nats_urls,
              help="NATS URL or comma-separated URLs ($DROVER_NATS).")
@click.option("--node", default=None, metavar="NAME", help="Node name (default: the host name).")
@click.option("--creds", envvar="DROVER_CREDS", default=None, metavar="FILE",
              help="NATS credentials (or nkey seed) file ($DROVER_CREDS); without it the connection is anonymous.")
@click.option("--ca", envvar="DROVER_CA", default=None, metavar="FILE",
              help="The cluster CA's PEM ($DROVER_CA): TLS to NATS; without it the connection is plain.")
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
@click.option("--count", type=click.IntRange(min=1), default=None,
              help="--driver sim: run this many hollow agents PREFIX-1 … PREFIX-N in this one process.")
@click.option("--node-prefix", "node_prefix", default=None, metavar="PREFIX",
              help="--driver sim --count: node names are PREFIX-1 … PREFIX-N (default: --node, else the host name).")
@click.option("--start-delay", default="0s", callback=_parsed(parse_duration), metavar="DURATION",
              help="--driver sim --count: a hollow replica reports running this long after it was assigned.")
@click.option("--data-dir", "data_dir", default=None, metavar="DIR",
              help="Where the agent keeps its state (default: $DROVER_HOME/agents/<cluster>/<node>).")
@click.option("--docker-config", "docker_config", default=None, metavar="FILE",
              help="Registry credentials for pulls: a Docker config.json (default: ~/.docker/config.json).")
@click.option("--log-level", type=LOG_LEVELS, default="info", show_default=True)
def agent_cmd(
    nats_url: str,
    node: str | None,
    creds: str | None,
    ca: str | None,
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
    count: int | None,
    node_prefix: str | None,
    start_delay: float,
    data_dir: str | None,
    docker_config: str | None,
    log_level: str,
) -> None:
    """Run an agent for one node in the foreground (until SIGINT/SIGTERM)."""
    if count is not None or node_prefix is not None:
        _run_fleet(nats_url, node_prefix or node, count or 1, driver, labels, address, cpu, memory, cluster,
                   start_delay, log_level, creds=_readable(creds, "--creds"), ca=_readable(ca, "--ca"))
        return
    natsload.load_daemon(nats_url)  # first: a restarted agent must heartbeat within the node grace, imports included
    from drover.agent.config import AgentConfig
    from drover.agent.fence import default_data_dir
    from drover.agent.main import run_agent

    _configure_logs(log_level)
    node = node or socket.gethostname().split(".")[0] or "node"
    cfg = AgentConfig(
        nats_url=nats_url,
        node=node,
        creds=_readable(creds, "--creds"),
        ca=_readable(ca, "--ca"),
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
        data_dir=data_dir or str(default_data_dir(cluster, node)),
        docker_config=docker_config,
    )
    _run_daemon("agent", run_agent(cfg, remove_containers=remove_on_stop))


def _readable(path: str | None, flag: str) -> str | None:
    """A credentials or CA file must be readable now: a typo is bad input, not an endless reconnect."""
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror or exc}", param_hint=f"'{flag}'") from None
    return path


def _run_fleet(
    nats_url: str, prefix: str | None, count: int, driver: str, labels: dict[str, str], address: str,
    cpu: float | None, memory: int | None, cluster: str, start_delay: float, log_level: str,
    *, creds: str | None = None, ca: str | None = None,
) -> None:
    if driver != "sim":
        raise click.UsageError("--count and --node-prefix need --driver sim (hollow agents)")
    prefix = prefix or socket.gethostname().split(".")[0] or "node"
    if not _NODE_PREFIX.match(prefix):
        raise click.BadParameter(f"{prefix!r}: letters, digits, '_' and '-' only", param_hint="'--node-prefix'")
    natsload.load_daemon(nats_url)
    from drover.agent.fleet import FleetConfig, run_fleet

    _configure_logs(log_level)
    cfg = FleetConfig(
        nats_url=nats_url, prefix=prefix, count=count, cluster=cluster, address=address,
        labels=labels, cpu=cpu, memory=memory, start_delay=start_delay, creds=creds, ca=ca,
    )
    _run_daemon("hollow fleet", run_fleet(cfg))


_NODE_PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,200}$")


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
