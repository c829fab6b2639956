"""NATS decentralised-auth tokens (JWT v2) signed with nkeys (ed25519), and the credentials-file format.

nats-server verifies a chain operator → account → user: the operator JWT is in the server config, the
account JWTs are preloaded there (MEMORY resolver), and a user presents a JWT signed by its account's key
plus a signature of the server's nonce made with its own nkey. So a user JWT issued at any time, by anyone
holding the account seed, is accepted at once without touching the servers. The tokens are small JSON
documents; the format is the one of the nats-io/jwt v2 library (header ``{"typ":"JWT","alg":"ed25519-nkey"}``,
base64url without padding, signature over ``header.payload``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import nkeys

_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
NO_LIMIT = -1

_PREFIX = {
    "operator": nkeys.PREFIX_BYTE_OPERATOR,
    "account": nkeys.PREFIX_BYTE_ACCOUNT,
    "user": nkeys.PREFIX_BYTE_USER,
}


class CredentialsError(ValueError):
    """A credentials or seed file that cannot be used."""


def new_seed(kind: str) -> bytes:
    """A fresh nkey seed (``SO…``, ``SA…``, ``SU…``) for an operator, account or user."""
    seed: bytes = nkeys.encode_seed(os.urandom(32), _PREFIX[kind])
    return seed


def public_key(seed: bytes) -> str:
    kp = nkeys.from_seed(bytearray(seed))
    try:
        return str(kp.public_key.decode())
    finally:
        kp.wipe()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(claims: dict[str, Any], signer_seed: bytes) -> str:
    """Sign ``claims`` (``iss`` is set to the signer's public key, ``jti`` to the claims' hash)."""
    kp = nkeys.from_seed(bytearray(signer_seed))
    try:
        body = dict(claims)
        body["iss"] = kp.public_key.decode()
        body.setdefault("iat", int(time.time()))
        body["jti"] = ""
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
        body["jti"] = base64.b32encode(digest).decode().rstrip("=")
        signing_input = f"{_b64(json.dumps(_HEADER).encode())}.{_b64(json.dumps(body).encode())}"
        signature = kp.sign(signing_input.encode())
    finally:
        kp.wipe()
    return f"{signing_input}.{_b64(signature)}"


def decode_unverified(token: str) -> dict[str, Any]:
    """The claims of a token (no signature check: the server does that; this is for display and tests)."""
    try:
        payload = json.loads(_unb64(token.split(".")[1]))
    except (IndexError, ValueError) as exc:
        raise CredentialsError("not a NATS JWT") from exc
    if not isinstance(payload, dict):
        raise CredentialsError("not a NATS JWT")
    return payload


def operator_jwt(operator_seed: bytes, *, name: str, system_account: str) -> str:
    return encode(
        {
            "sub": public_key(operator_seed),
            "name": name,
            "nats": {"type": "operator", "version": 2, "system_account": system_account},
        },
        operator_seed,
    )


def account_jwt(
    operator_seed: bytes, account_seed: bytes, *, name: str, jetstream: bool, revocations: dict[str, int] | None = None,
    issued_at: int | None = None,
) -> str:
    """``revocations``: user public key -> unix time; nats-server refuses that user's JWTs issued at or before
    it (and drops its connections when the account JWT carrying it arrives)."""
    limits: dict[str, Any] = {
        "subs": NO_LIMIT, "data": NO_LIMIT, "payload": NO_LIMIT, "imports": NO_LIMIT, "exports": NO_LIMIT,
        "wildcards": True, "conn": NO_LIMIT, "leaf": NO_LIMIT,
    }
    if jetstream:
        limits.update({"mem_storage": NO_LIMIT, "disk_storage": NO_LIMIT, "streams": NO_LIMIT, "consumer": NO_LIMIT})
    nats: dict[str, Any] = {
        "type": "account", "version": 2, "limits": limits, "default_permissions": {"pub": {}, "sub": {}},
    }
    if revocations:
        nats["revocations"] = dict(sorted(revocations.items()))
    claims: dict[str, Any] = {"sub": public_key(account_seed), "name": name, "nats": nats}
    if issued_at is not None:
        claims["iat"] = issued_at
    return encode(claims, operator_seed)


@dataclass(frozen=True)
class Permissions:
    """Subjects a user may publish to / subscribe to; ``None`` lists mean no restriction (admin)."""

    pub: list[str] | None = None
    sub: list[str] | None = None
    tags: list[str] = field(default_factory=list)


def user_jwt(account_seed: bytes, user_public: str, *, name: str, perms: Permissions) -> str:
    nats: dict[str, Any] = {
        "type": "user", "version": 2, "subs": NO_LIMIT, "data": NO_LIMIT, "payload": NO_LIMIT,
        "pub": {"allow": perms.pub} if perms.pub is not None else {},
        "sub": {"allow": perms.sub} if perms.sub is not None else {},
    }
    if perms.tags:
        nats["tags"] = perms.tags
    return encode({"sub": user_public, "name": name, "nats": nats}, account_seed)


_CREDS = """-----BEGIN NATS USER JWT-----
{jwt}
------END NATS USER JWT------

************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.
NKEYs are sensitive and should be treated as secrets.

-----BEGIN USER NKEY SEED-----
{seed}
------END USER NKEY SEED------

*************************************************************
"""

_BLOCK = re.compile(r"-{3,}BEGIN [A-Z0-9 ]+-{3,}\s*\n\s*(\S+)\s*\n\s*-{3,}END [A-Z0-9 ]+-{3,}")


def creds_text(jwt: str, seed: bytes) -> str:
    """A NATS credentials file (the format ``nsc`` writes and nats-py's ``user_credentials=`` loads)."""
    return _CREDS.format(jwt=jwt, seed=seed.decode())


@dataclass(frozen=True)
class LoadedCredentials:
    jwt: str | None  # None: a bare nkey seed file
    seed: bytes

    @property
    def public_key(self) -> str:
        return public_key(self.seed)


def parse_credentials(text: str) -> LoadedCredentials:
    """A NATS credentials file (JWT + seed) or an nkey seed file (one ``SU…`` line)."""
    blocks = _BLOCK.findall(text)
    if len(blocks) >= 2:
        jwt, seed = blocks[0], blocks[1].encode()
    else:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("SU")]
        if not lines:
            raise CredentialsError("neither a NATS credentials file nor an nkey seed file")
        jwt, seed = None, lines[0].encode()
    try:
        public_key(seed)
    except Exception as exc:
        raise CredentialsError(f"the nkey seed does not decode ({exc or type(exc).__name__})") from exc
    return LoadedCredentials(jwt=jwt, seed=seed)
