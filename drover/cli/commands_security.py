"""``drover credentials``: credentials for one role, and the cluster's keys, CA and nats-server config.

Signing needs the cluster account's key, which lives with the CA in the security directory
(``$DROVER_HOME/security``, made by ``drover up`` or ``drover credentials init``; ``--dir`` elsewhere).
nats-server need not be told about a new credential: it checks the account's signature, so a file issued
while the cluster runs works at once.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import click

from drover.cli import options
from drover.cli.client import EXIT_INVALID, CliError
from drover.cli.context import drover_home, resolve

_NODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}\*?$")


def _security_dir(path: Path | None) -> Path:
    return (path or drover_home() / "security").expanduser()


def _open(path: Path | None, *, create: bool = False, hosts: tuple[str, ...] = ()) -> object:
    from drover.shared.security import SecurityDir
    from drover.shared.security_jwt import CredentialsError

    sec = SecurityDir(_security_dir(path))
    try:
        if create:
            return sec.ensure(list(hosts))
        if not sec.exists():
            raise CliError(
                f"no cluster keys in {sec.path}: run 'drover up' or 'drover credentials init' there first "
                "(or point --dir at them)"
            )
        return sec
    except (OSError, CredentialsError) as exc:
        raise CliError(f"cannot use the cluster keys in {sec.path}: {exc}") from exc


def _cluster() -> str:
    ctx = click.get_current_context()
    return resolve(None, ctx.meta.get("drover.cluster")).cluster


def _emit(text: str, out: Path | None, what: str) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    from drover.shared.security import write_credentials

    try:
        write_credentials(out, text)
    except OSError as exc:
        raise CliError(f"cannot write {out}: {exc.strerror or exc}") from exc
    click.echo(f"{what} written to {out}", err=True)


def _issue(role: str, node: str | None, out: Path | None, directory: Path | None) -> None:
    from drover.shared.security import SecurityDir

    sec = _open(directory)
    assert isinstance(sec, SecurityDir)
    cluster = _cluster()
    text = sec.issue(role, cluster=cluster, node=node)
    _emit(text, out, f"credentials for {role}{' ' + node if node else ''} (cluster {cluster})")


_dir_option = click.option(
    "--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="The cluster's security directory (default: $DROVER_HOME/security).",
)
_out_option = click.option(
    "-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Write to FILE (mode 0600) instead of stdout.",
)


@click.group("credentials")
def credentials_group() -> None:
    """Credentials for a role (agent NODE, controller, client), and the cluster's keys and CA."""


@credentials_group.command("agent")
@click.argument("node")
@options.cluster_options
@_out_option
@_dir_option
def agent_cmd(node: str, out: Path | None, directory: Path | None) -> None:
    """Credentials of the agent of NODE (or of a fleet sharing a prefix: 'P-*')."""
    if not _NODE_RE.match(node):
        raise CliError(
            f"node {node!r}: must be letters, digits, '-' or '_' (at most 128), optionally ending in '*'",
            code=EXIT_INVALID,
        )
    _issue("agent", node, out, directory)


@credentials_group.command("controller")
@options.cluster_options
@_out_option
@_dir_option
def controller_cmd(out: Path | None, directory: Path | None) -> None:
    """Credentials of a controller."""
    _issue("controller", None, out, directory)


@credentials_group.command("client")
@click.option("--read-only", is_flag=True, help="Only get/describe/logs/events (no apply, scale, delete …).")
@options.cluster_options
@_out_option
@_dir_option
def client_cmd(read_only: bool, out: Path | None, directory: Path | None) -> None:
    """Credentials of a user of the API (the CLI)."""
    _issue("client-read-only" if read_only else "client", None, out, directory)


@credentials_group.command("admin")
@options.cluster_options
@_out_option
@_dir_option
def admin_cmd(out: Path | None, directory: Path | None) -> None:
    """Admin credentials (every subject of every cluster on these servers)."""
    _issue("admin", None, out, directory)


_USER_KEY_RE = re.compile(r"^U[A-Z2-7]{55}$")


def _revocation_target(target: str) -> tuple[str, str]:
    """(user public key, name) of a credentials file or of a user public key (``U…``)."""
    from drover.shared.security import load_credentials
    from drover.shared.security_jwt import CredentialsError, decode_unverified

    if _USER_KEY_RE.match(target):
        return target, ""
    if not Path(target).exists():
        raise CliError(f"{target!r}: neither a credentials file nor a user public key (U…)", code=EXIT_INVALID)
    try:
        loaded = load_credentials(target)
        name = str(decode_unverified(loaded.jwt).get("name", "")) if loaded.jwt else ""
    except CredentialsError as exc:
        raise CliError(str(exc), code=EXIT_INVALID) from exc
    return loaded.public_key, name


def _rewrite_lab_configs(sec: object) -> list[str]:
    """Rewrite the nats-server configs of a running ``drover up`` (so a restarted server keeps the
    revocations); the paths rewritten."""
    from drover.cli.lab import STATE_FILE, read_state
    from drover.shared.security import SecurityDir, write_credentials

    assert isinstance(sec, SecurityDir)
    state = read_state(drover_home() / STATE_FILE) or {}
    configs = {
        str(p["config"]) for p in state.get("processes", [])
        if isinstance(p, dict) and p.get("kind") == "nats" and isinstance(p.get("config"), str)
    }
    for conf in sorted(configs):
        write_credentials(Path(conf), sec.security_config() + "\n")
    return sorted(configs)


@credentials_group.command("revoke")
@click.argument("targets", nargs=-1, required=True, metavar="CREDS_FILE|USER_KEY...")
@options.cluster_options
@_dir_option
def revoke_cmd(targets: tuple[str, ...], directory: Path | None) -> None:
    """Revoke credentials: running nats-servers refuse them at once and drop their connections.

    Each TARGET is a credentials file or its user's public key (U…). The revocation is signed into the
    cluster account with the keys in the security directory and sent to the servers of the context (or
    --nats); the configs of a running 'drover up' are rewritten too.
    """
    from drover.shared.security import SecurityDir
    from drover.shared.security_jwt import CredentialsError
    from drover.shared.security_revoke import push_account

    users = [_revocation_target(t) for t in targets]
    sec = _open(directory)
    assert isinstance(sec, SecurityDir)
    try:
        for user, name in users:
            token = sec.revoke(user, name=name)
        rewritten = _rewrite_lab_configs(sec)
    except (OSError, CredentialsError) as exc:
        raise CliError(f"cannot record the revocation in {sec.path}: {exc}") from exc
    for user, name in users:
        click.echo(f"credentials {user}{f' ({name})' if name else ''} revoked")
    for conf in rewritten:
        click.echo(f"nats-server config {conf} rewritten", err=True)
    t = options.target()
    try:
        result = asyncio.run(push_account(t.servers, sec, token, ca=t.ca))
    except Exception as exc:
        raise CliError(
            f"revocation recorded in {sec.path} but not sent to {t.nats} ({exc or type(exc).__name__}): run "
            "the same command again when a server is reachable, or restart the servers with the new config"
        ) from exc
    took = sum(1 for a in result.answers if a.ok)
    for a in result.answers:
        if not a.ok:
            click.echo(f"server {a.server} refused the update: {a.message}", err=True)
    if not result.complete:
        raise CliError(
            f"revocation recorded in {sec.path} but in force on {took} of {result.expected} nats-server(s): "
            "run the same command again when they are up"
        )
    click.echo(f"in force on {took} nats-server(s)", err=True)


@credentials_group.command("revocations")
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@_dir_option
def revocations_cmd(fmt: str, directory: Path | None) -> None:
    """The revoked credentials (user public key, when, name)."""
    import json
    from datetime import UTC, datetime

    from drover.shared.security import SecurityDir
    from drover.shared.security_jwt import CredentialsError

    sec = _open(directory)
    assert isinstance(sec, SecurityDir)
    try:
        rows = [
            {"user": r.user, "revoked": datetime.fromtimestamp(r.time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "name": r.name}
            for r in sorted(sec.revocations().values(), key=lambda r: (r.time, r.user))
        ]
    except CredentialsError as exc:
        raise CliError(str(exc)) from exc
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'USER':<57}{'REVOKED':<22}NAME")
    for row in rows:
        click.echo(f"{row['user']:<57}{row['revoked']:<22}{row['name']}")


@credentials_group.command("init")
@click.option("--host", "hosts", multiple=True, metavar="HOST",
              help="A host name or IP clients use to reach a nats-server (repeatable; 127.0.0.1 is always named).")
@_dir_option
def init_cmd(hosts: tuple[str, ...], directory: Path | None) -> None:
    """Create (once) the cluster's keys, CA, server certificate and admin credentials."""
    from drover.shared.security import SecurityDir

    sec = _open(directory, create=True, hosts=hosts)
    assert isinstance(sec, SecurityDir)
    click.echo(f"cluster keys, CA ({sec.ca}), server certificate ({sec.server_cert}) and admin credentials "
               f"({sec.admin_creds}) are in {sec.path}")


@credentials_group.command("server-config")
@click.option("--name", default="nats-1", show_default=True, help="This server's name.")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address the server listens on.")
@click.option("--port", type=click.IntRange(1, 65535), default=4222, show_default=True)
@click.option("--store-dir", default="/var/lib/nats/jetstream", show_default=True, help="JetStream storage.")
@click.option("--route-port", type=click.IntRange(1, 65535), default=None,
              help="Cluster (route) port; with --peer, this server is one of a JetStream cluster.")
@click.option("--peer", "peers", multiple=True, metavar="HOST:ROUTEPORT",
              help="Another server's route address (repeatable).")
@click.option("--cluster-name", default="drover", show_default=True, help="The NATS cluster's name.")
@_out_option
@_dir_option
def server_config_cmd(
    name: str, host: str, port: int, store_dir: str, route_port: int | None, peers: tuple[str, ...],
    cluster_name: str, out: Path | None, directory: Path | None,
) -> None:
    """The nats-server config: TLS (routes too, mutual) and authentication required, JetStream on."""
    from drover.shared.security import SecurityDir, ServerSpec

    sec = _open(directory)
    assert isinstance(sec, SecurityDir)
    me = ServerSpec(name=name, host=host, port=port, route_port=route_port)
    others: list[ServerSpec] = []
    for i, peer in enumerate(peers):
        phost, sep, pport = peer.rpartition(":")
        if not sep or not pport.isdigit() or not phost:
            raise CliError(f"--peer {peer!r}: expected HOST:ROUTEPORT", code=EXIT_INVALID)
        others.append(ServerSpec(name=f"peer-{i + 1}", host=phost, port=port, route_port=int(pport)))
    if others and route_port is None:
        raise CliError("--peer needs --route-port (this server's route port)", code=EXIT_INVALID)
    text = sec.server_config(me, store_dir=Path(store_dir), peers=[me, *others] if others else None,
                             cluster_name=cluster_name)
    _emit(text, out, "nats-server config")


__all__ = ["credentials_group"]
