"""A cluster's security material on disk, credentials for its roles, nats-server configs, client TLS.

``SecurityDir(path).ensure(hosts)`` creates, once, everything a secure cluster needs (files 0600 where
secret): an operator, the cluster account and the system account (nkey seeds and JWTs), a CA and the
nats-server certificate, and an admin credentials file. Later calls reuse it (re-issuing only the server
certificate when a new host must be named). ``issue`` signs a credentials file for a role with the account
key; nats-server learns nothing about it, so it works at once on running servers. ``revoke`` records a
user's revocation and re-signs the account JWT with it (``security_revoke`` sends it to the running
servers; the configs written from here on carry it). ``server_config`` writes
the nats-server configuration (TLS on client and route ports, JWT auth with a MEMORY resolver, JetStream)
for one server of N.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drover.shared import security_jwt as sj
from drover.shared import security_roles as roles
from drover.shared.limits import NATS_MAX_PAYLOAD

ACCOUNT_NAME = "DROVER"
SYSTEM_ACCOUNT_NAME = "SYS"


def _write(path: Path, data: bytes | str, *, secret: bool) -> None:
    """Write atomically; secret files are created 0600 (never world-readable, not even for a moment)."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    try:
        os.write(fd, raw)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_credentials(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, text, secret=True)


@dataclass(frozen=True)
class Revocation:
    user: str  # the user's public key (U…)
    time: int  # credentials of this user issued at or before this unix time are refused
    name: str = ""  # the revoked credential's name, when known


@dataclass(frozen=True)
class ServerSpec:
    """One nats-server of a (possibly one-server) cluster."""

    name: str
    host: str
    port: int
    route_port: int | None = None  # None: a single server, no routes


class SecurityDir:
    """The security material of one cluster in a directory (``$DROVER_HOME/security`` for ``drover up``)."""

    def __init__(self, path: Path):
        self.path = path

    # File names (the deploy guide copies ca.pem and the creds files to hosts).
    @property
    def ca(self) -> Path:
        return self.path / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.path / "ca-key.pem"

    @property
    def server_cert(self) -> Path:
        return self.path / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.path / "server-key.pem"

    @property
    def admin_creds(self) -> Path:
        return self.path / "admin.creds"

    def _seed_path(self, kind: str) -> Path:
        return self.path / f"{kind}.seed"

    def _jwt_path(self, kind: str) -> Path:
        return self.path / f"{kind}.jwt"

    def exists(self) -> bool:
        return all(
            p.exists() for p in (self.ca, self.ca_key, self.server_cert, self.server_key, self._seed_path("account"))
        )

    def seed(self, kind: str) -> bytes:
        try:
            return self._seed_path(kind).read_bytes().strip()
        except OSError as exc:
            raise sj.CredentialsError(
                f"no cluster keys in {self.path} ({exc.strerror or exc}): run 'drover up' or "
                "'drover credentials init' there first"
            ) from exc

    def jwt(self, kind: str) -> str:
        return self._jwt_path(kind).read_text().strip()

    def ensure(self, hosts: list[str] | None = None) -> SecurityDir:
        """Create whatever is missing; re-issue the server certificate if it does not name all ``hosts``."""
        from drover.shared import security_pki as pki  # cryptography: only where certificates are made

        self.path.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(self.path, 0o700)
        for kind in ("operator", "account", "system"):
            if not self._seed_path(kind).exists():
                _write(self._seed_path(kind), sj.new_seed("operator" if kind == "operator" else "account"), secret=True)
        op = self.seed("operator")
        system_pub = sj.public_key(self.seed("system"))
        if not self._jwt_path("operator").exists():
            tok = sj.operator_jwt(op, name="drover", system_account=system_pub)
            _write(self._jwt_path("operator"), tok, secret=False)
        if not self._jwt_path("account").exists():
            self._sign_account()
        if not self._jwt_path("system").exists():
            tok = sj.account_jwt(op, self.seed("system"), name=SYSTEM_ACCOUNT_NAME, jetstream=False)
            _write(self._jwt_path("system"), tok, secret=False)
        if not (self.ca.exists() and self.ca_key.exists()):
            cert, key = pki.make_ca("drover cluster CA")
            _write(self.ca_key, key, secret=True)
            _write(self.ca, cert, secret=False)
            with contextlib.suppress(OSError):
                self.server_cert.unlink()
        wanted = hosts or []
        if not self.server_cert.exists() or not set(wanted) <= set(pki.cert_hosts(self.server_cert.read_bytes())):
            have = pki.cert_hosts(self.server_cert.read_bytes()) if self.server_cert.exists() else []
            cert, key = pki.make_server_cert(self.ca.read_bytes(), self.ca_key.read_bytes(), [*have, *wanted])
            _write(self.server_key, key, secret=True)
            _write(self.server_cert, cert, secret=False)
        if not self.admin_creds.exists():
            _write(self.admin_creds, self.issue("admin", cluster="*", name="admin"), secret=True)
        return self

    # --- revocation -----------------------------------------------------------------------------------
    @property
    def revocations_file(self) -> Path:
        return self.path / "revocations.json"

    def revocations(self) -> dict[str, Revocation]:
        """Revoked users (public key -> when and what), as recorded in ``revocations.json``."""
        try:
            raw = json.loads(self.revocations_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise sj.CredentialsError(f"{self.revocations_file}: unreadable ({exc})") from exc
        out: dict[str, Revocation] = {}
        for user, item in (raw.items() if isinstance(raw, dict) else []):
            if isinstance(item, dict) and isinstance(item.get("time"), int):
                out[str(user)] = Revocation(user=str(user), time=item["time"], name=str(item.get("name", "")))
        return out

    def revoke(self, user: str, *, name: str = "", now: float | None = None) -> str:
        """Revoke every credential of user ``user`` (its public key) issued until now: record it and re-sign
        the account JWT with it (returned; servers learn it from ``security_revoke.push_account``)."""
        revoked = self.revocations()
        if user not in revoked:
            revoked[user] = Revocation(user=user, time=int(now if now is not None else time.time()), name=name)
            body = {r.user: {"time": r.time, "name": r.name} for r in revoked.values()}
            _write(self.revocations_file, json.dumps(body, indent=2, sort_keys=True) + "\n", secret=False)
        return self._sign_account()

    def _sign_account(self) -> str:
        """(Re-)sign the cluster account's JWT, with the recorded revocations."""
        revoked = {r.user: r.time for r in self.revocations().values()}
        tok = sj.account_jwt(
            self.seed("operator"), self.seed("account"), name=ACCOUNT_NAME, jetstream=True, revocations=revoked
        )
        _write(self._jwt_path("account"), tok, secret=False)
        return tok

    @property
    def account_public(self) -> str:
        return sj.public_key(self.seed("account"))

    def issue(self, role: str, *, cluster: str, node: str | None = None, name: str | None = None) -> str:
        """A NATS credentials file for ``role`` on ``cluster`` signed by the cluster account's key."""
        perms = roles.for_role(role, cluster, node)
        user_seed = sj.new_seed("user")
        if perms.sub is not None:
            # Subscriptions to inboxes: only this user's own (nobody reads another component's replies).
            mine = f"{roles.own_inbox(sj.public_key(user_seed))}.>"
            perms = dataclasses.replace(perms, sub=[mine if s == roles.INBOX else s for s in perms.sub])
        label = name or (f"agent {node}" if role == "agent" else role)
        token = sj.user_jwt(self.seed("account"), sj.public_key(user_seed), name=f"{label} ({cluster})", perms=perms)
        return sj.creds_text(token, user_seed)

    def security_config(self) -> str:
        """The TLS and authorisation part of a nats-server config (``drover up`` adds host, port and
        JetStream on the command line): TLS required on client connections, INFO sent before the TLS
        handshake (the default), the operator JWT and the accounts preloaded in a MEMORY resolver."""
        account_pub = sj.public_key(self.seed("account"))
        system_pub = sj.public_key(self.seed("system"))
        files = f'cert_file: "{self.server_cert}", key_file: "{self.server_key}", ca_file: "{self.ca}"'
        return "\n".join([
            f"tls {{ {files}, timeout: 5 }}",
            # A role's JWT (its subject permissions) travels in the CONNECT line: allow more than 4 KiB.
            "max_control_line: 65536",
            # A service record or an assignment holds whole specs, which may be as big as a manifest file.
            f"max_payload: {NATS_MAX_PAYLOAD}",
            f'operator: "{self._jwt_path("operator")}"',
            f'system_account: "{system_pub}"',
            "resolver: MEMORY",
            "resolver_preload: {",
            f'  {account_pub}: "{self.jwt("account")}"',
            f'  {system_pub}: "{self.jwt("system")}"',
            "}",
        ])

    def server_config(self, me: ServerSpec, *, store_dir: Path, peers: list[ServerSpec] | None = None,
                      cluster_name: str = "drover") -> str:
        """nats-server configuration for ``me``; ``peers`` (every server, ``me`` included) makes it one of a
        JetStream cluster with mutually authenticated TLS routes."""
        lines = [
            "# Written by drover: TLS and JWT authentication are required on every client connection.",
            f'server_name: "{me.name}"',
            f'host: "{me.host}"',
            f"port: {me.port}",
            f'jetstream {{ store_dir: "{store_dir}" }}',
            self.security_config(),
        ]
        if peers and me.route_port is not None:
            routes = ", ".join(
                f'"nats-route://{p.host}:{p.route_port}"' for p in peers if p.route_port is not None and p != me
            )
            route_tls = (
                f'{{ cert_file: "{self.server_cert}", key_file: "{self.server_key}", ca_file: "{self.ca}", '
                "verify: true, timeout: 5 }"
            )
            lines += [
                "cluster {",
                f'  name: "{cluster_name}"',
                f'  host: "{me.host}"',
                f"  port: {me.route_port}",
                f"  routes: [{routes}]",
                f"  tls {route_tls}",
                "}",
            ]
        return "\n".join(lines) + "\n"

    def server_configs(
        self, servers: list[ServerSpec], store_dirs: list[Path], cluster_name: str = "drover"
    ) -> list[str]:
        """The configs of N servers forming one cluster (N = 1: a plain single server)."""
        if len(servers) == 1:
            return [self.server_config(servers[0], store_dir=store_dirs[0])]
        return [
            self.server_config(s, store_dir=d, peers=servers, cluster_name=cluster_name)
            for s, d in zip(servers, store_dirs, strict=True)
        ]


def is_permission_error(exc: BaseException) -> bool:
    """nats-server refused a publish or subscribe for this connection's credentials (an async ``-ERR``)."""
    return "permissions violation" in str(exc).lower()


def tls_context(ca_file: str) -> ssl.SSLContext:
    """A client TLS context trusting only the cluster CA (hostname checked against the server's SANs)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def connect_options(creds: str | None, ca: str | None) -> dict[str, Any]:
    """Extra ``nats.connect`` arguments for a credentials file and a CA file (either may be None: then
    that part is left out and the connection is plain / anonymous: refusing it is the server's job)."""
    opts: dict[str, Any] = {}
    if ca:
        opts["tls"] = tls_context(ca)
    if creds:
        loaded = load_credentials(creds)
        opts["inbox_prefix"] = roles.own_inbox(loaded.public_key)
        if loaded.jwt is None:
            opts["nkeys_seed"] = creds
        else:
            opts["user_credentials"] = creds
    return opts


def load_credentials(path: str) -> sj.LoadedCredentials:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise sj.CredentialsError(f"cannot read credentials file {path}: {exc.strerror or exc}") from exc
    try:
        return sj.parse_credentials(text)
    except sj.CredentialsError as exc:
        raise sj.CredentialsError(f"credentials file {path}: {exc}") from exc
