"""Per-node gossip identity: an ed25519 key pair, signatures, and verification against a directory.

Each agent signs every datagram (and every record it originates) with its own private key; receivers verify
against the public key that node published in its own registration record in the nodes bucket, which only
that node's credentials may write. So a member can sign only as itself, whatever else it knows.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIG_LEN = 64
PUBLIC_LEN = 32
SEED_LEN = 32
KEY_FILE = "gossip.key"


class NodeKey:
    """One node's ed25519 private key (``sign``) and its raw 32-byte public key (``public``)."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public: bytes = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls) -> NodeKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> NodeKey:
        if len(seed) != SEED_LEN:
            raise ValueError(f"an ed25519 seed is {SEED_LEN} bytes, not {len(seed)}")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def load_or_create(cls, data_dir: str | os.PathLike[str]) -> NodeKey:
        """The key kept in ``data_dir/gossip.key`` (created 0600 on first use), so a restart keeps its identity
        and peers can still verify what its previous life signed."""
        path = Path(data_dir) / KEY_FILE
        try:
            return cls.from_seed(path.read_bytes())
        except (FileNotFoundError, ValueError):  # none yet, or damaged: a new identity (re-published at start)
            pass
        key = cls.generate()
        seed = key._private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(seed)
        os.replace(tmp, path)
        return key

    @property
    def public_hex(self) -> str:
        return self.public.hex()

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)


class Verifier:
    """Checks signatures against raw public keys, keeping the parsed keys (a small, bounded cache)."""

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._keys: dict[bytes, Ed25519PublicKey] = {}

    def verify(self, public: bytes, sig: bytes, data: bytes) -> bool:
        k = self._keys.get(public)
        if k is None:
            try:
                k = Ed25519PublicKey.from_public_bytes(public)
            except ValueError:
                return False
            if len(self._keys) >= self._limit:
                self._keys.clear()
            self._keys[public] = k
        try:
            k.verify(sig, data)
        except InvalidSignature:
            return False
        return True


def parse_public(text: str) -> bytes | None:
    """A registration's ``gossip_pubkey`` (64 hex digits) as raw bytes, or None when absent or malformed."""
    if len(text) != 2 * PUBLIC_LEN:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None
