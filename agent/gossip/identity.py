"""Per-node gossip identity: an ed25519 key pair, signatures, key agreement, and verification against a directory.

Each agent signs every record it originates (and the datagrams a peer may not have its key for yet, see
``codec``) with its own private key; receivers verify against the public key that node published in its own
registration record in the nodes bucket, which only that node's credentials may write. So a member can sign
only as itself, whatever else it knows. The same key pair, converted to curve25519, gives each pair of nodes
a Diffie-Hellman secret (``exchange``) that only those two can compute: the root of the pairwise datagram
MAC keys (``pairkeys.py``).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.bindings import (
    crypto_scalarmult,
    crypto_sign_ed25519_pk_to_curve25519,
    crypto_sign_ed25519_sk_to_curve25519,
)
from nacl.exceptions import CryptoError

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
        # libsodium's secret key is seed + public key; its curve25519 form is the X25519 scalar of this node
        self._curve = crypto_sign_ed25519_sk_to_curve25519(self._seed() + self.public)

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
        seed = key._seed()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(seed)
        os.replace(tmp, path)
        return key

    def _seed(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    @property
    def public_hex(self) -> str:
        return self.public.hex()

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def exchange(self, peer_public: bytes) -> bytes | None:
        """X25519 of this node's key and a peer's ed25519 public key (both converted to curve25519): the same 32
        bytes on both sides, computable only by the two of them. None for a key that is not a valid point or
        gives the all-zero secret (a low-order point: anyone could compute it)."""
        try:
            return crypto_scalarmult(self._curve, crypto_sign_ed25519_pk_to_curve25519(peer_public))
        except (CryptoError, TypeError, ValueError):
            return None


class Verifier:
    """Checks signatures against raw public keys, keeping the parsed keys and the outcome of the last ``checked``
    checks (bounded LRUs): a record forwarded unchanged by several members costs one check, not one per copy."""

    def __init__(self, limit: int = 4096, checked: int = 4096) -> None:
        self._limit = limit
        self._keys: dict[bytes, Ed25519PublicKey] = {}
        self._checked_limit = checked
        self._checked: OrderedDict[bytes, bool] = OrderedDict()
        self.checks = 0  # signature checks actually computed (not answered from the cache)

    def verify(self, public: bytes, sig: bytes, data: bytes, *, cache: bool = True) -> bool:
        """``cache=False`` for data that never comes twice (a whole datagram, with its own nonce)."""
        if not cache:
            return self._check(public, sig, data)
        # The exact bytes are the key (no digest to collide): at most 32 + 64 + a datagram's size each.
        memo = public + sig + data
        seen = self._checked.get(memo)
        if seen is not None:
            self._checked.move_to_end(memo)
            return seen
        ok = self._check(public, sig, data)
        self._checked[memo] = ok
        if len(self._checked) > self._checked_limit:
            self._checked.popitem(last=False)
        return ok

    def _check(self, public: bytes, sig: bytes, data: bytes) -> bool:
        self.checks += 1
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


# One per process, shared by every node in it (an agent has one; a benchmark or test may host many): a record
# forwarded to several of them is checked once. Entries are keyed by public key, signature and data, so nodes
# with different key directories cannot mislead one another through it.
SHARED_VERIFIER = Verifier(checked=8192)


def parse_public(text: str) -> bytes | None:
    """A registration's ``gossip_pubkey`` (64 hex digits) as raw bytes, or None when absent or malformed."""
    if len(text) != 2 * PUBLIC_LEN:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None
