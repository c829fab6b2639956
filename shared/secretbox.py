"""Secrets at rest: AES-256-GCM under the cluster's secret key, which never goes to NATS.

The key is 32 random bytes kept base64-encoded in a file readable by its owner only (``--secret-key FILE``,
``$DROVER_SECRET_KEY``, default ``$DROVER_HOME/<cluster>.secret.key``), created on first use by the
controller. The KV store holds only ``SecretRecord``s: a nonce and the ciphertext, authenticated with the
secret's name (so a ciphertext copied under another name fails to decrypt). A snapshot carries the records
as they are; restoring them into another cluster re-encrypts them with the key of the cluster they came from
(``--key FILE``).
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from pydantic import Field

from drover.shared.errors import PermanentError
from drover.shared.models import Record

KEY_BYTES = 32
NONCE_BYTES = 12


class SecretKeyError(PermanentError):
    """The key file is missing, unreadable or not a key; or a ciphertext does not match the key."""


class SecretRecord(Record):
    """A secret in the KV store: never the plaintext."""

    name: str
    version: int = 1  # bumped on every change of content
    created: float = 0.0
    updated: float = 0.0
    size: int = 0
    nonce: str = ""  # base64 (the wire form of records is JSON-like)
    ciphertext: str = ""  # base64
    used_by: list[str] = Field(default_factory=list)  # not stored: filled in by ``secret list``


def default_key_file(cluster: str) -> Path:
    env = os.environ.get("DROVER_SECRET_KEY")
    if env:
        return Path(env).expanduser()
    home = Path(os.environ.get("DROVER_HOME") or "~/.drover").expanduser()
    return home / f"{cluster}.secret.key"


def read_key(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise SecretKeyError(f"{path}: no such key file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretKeyError(f"{path}: cannot read the key ({exc})") from None
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SecretKeyError(f"{path}: not a drover secret key (base64 of {KEY_BYTES} bytes)") from None
    if len(key) != KEY_BYTES:
        raise SecretKeyError(f"{path}: not a drover secret key (base64 of {KEY_BYTES} bytes)")
    return key


def load_or_create_key(path: Path) -> bytes:
    """The key in ``path``; a new random one written there (mode 0600) when the file does not exist."""
    if path.exists():
        return read_key(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(KEY_BYTES)
    # O_EXCL: two controllers starting at once must not each write their own key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_key(path)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(base64.b64encode(key).decode() + "\n")
    return key


class SecretBox:
    """Encrypts and decrypts secret records with one cluster key."""

    def __init__(self, key: bytes):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if len(key) != KEY_BYTES:
            raise SecretKeyError(f"a secret key is {KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    def seal(self, name: str, data: bytes, *, version: int, created: float, now: float) -> SecretRecord:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return SecretRecord(
            name=name,
            version=version,
            created=created,
            updated=now,
            size=len(data),
            nonce=base64.b64encode(nonce).decode(),
            ciphertext=base64.b64encode(self._aead.encrypt(nonce, data, name.encode())).decode(),
        )

    def open(self, rec: SecretRecord) -> bytes:
        from cryptography.exceptions import InvalidTag

        try:
            nonce, body = base64.b64decode(rec.nonce), base64.b64decode(rec.ciphertext)
            return self._aead.decrypt(nonce, body, rec.name.encode())
        except (InvalidTag, ValueError, binascii.Error):
            raise SecretKeyError(f"secret {rec.name}: cannot be decrypted with this key") from None
