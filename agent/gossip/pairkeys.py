"""``PairKeys``: the symmetric key this node shares with each peer, for the datagram MAC (``codec``).

The key of a pair of nodes is BLAKE2b, keyed with their X25519 secret (``NodeKey.exchange``: each one's ed25519
key converted to curve25519), over a domain label, the cluster key and both names with their public keys,
ordered by name. Only those two nodes can compute it, so a datagram MAC'd with it proves to the receiver who
sent it (the sender's name is under the MAC), at the cost of a keyed hash (a few µs) instead of an ed25519
signature and check (~100 + ~200 µs). The cluster key in the derivation keeps two clusters that reuse names
and keys apart.

Keys are derived on first use and cached per peer; the cache holds only peers of the key directory
(``trust``), and an entry is dropped when that peer's published key changes or leaves the directory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from drover.agent.gossip.identity import NodeKey

LABEL = b"drover gossip pair key v1"
PERSON = b"drover-gossip"  # BLAKE2b personalisation (<= 16 bytes): another domain separation
KEY_LEN = 32


def derive(cluster_key: bytes, me: str, identity: NodeKey, peer: str, peer_public: bytes) -> bytes | None:
    """The pair key of ``me`` (holding ``identity``) and ``peer``; the same on both sides. None when the peer's
    key gives no usable secret (not a curve point, or a low-order one)."""
    shared = identity.exchange(peer_public)
    if shared is None:
        return None
    h = hashlib.blake2b(key=shared, digest_size=KEY_LEN, person=PERSON)
    first, second = sorted([(me.encode(), identity.public), (peer.encode(), peer_public)])
    for part in (LABEL, hashlib.sha256(cluster_key).digest(), *first, *second):
        h.update(len(part).to_bytes(2, "big") + part)  # length-prefixed: no two inputs concatenate alike
    return h.digest()


class PairKeys:
    def __init__(self, name: str, identity: NodeKey, cluster_key: bytes, directory: Mapping[str, bytes]) -> None:
        self.name = name
        self.identity = identity
        self.cluster_key = cluster_key
        self._directory = directory
        self._cache: dict[str, tuple[bytes, bytes | None]] = {}  # peer -> (its public key, the pair key)

    def trust(self, directory: Mapping[str, bytes]) -> None:
        """Use ``directory`` (name -> published ed25519 key); pair keys of peers whose key changed are dropped."""
        self._directory = directory
        for peer in [p for p, (public, _) in self._cache.items() if directory.get(p) != public]:
            del self._cache[peer]

    def get(self, peer: str) -> bytes | None:
        """The key shared with ``peer``, or None when it has no (usable) key in the directory, or is us."""
        public = self._directory.get(peer)
        if public is None or peer == self.name:
            return None
        held = self._cache.get(peer)
        if held is not None and held[0] == public:
            return held[1]
        key = derive(self.cluster_key, self.name, self.identity, peer, public)
        self._cache[peer] = (public, key)
        return key

    def __len__(self) -> int:
        return len(self._cache)
