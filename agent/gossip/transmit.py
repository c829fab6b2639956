"""``Transmitter``: the sending end of one gossip node: packs records into numbered bodies (a nonce that only
grows, also across restarts, for the receivers' replay windows), seals each for its receiver and sends it.

A body is sealed with the pair key of the receiver (``PairKeys``, a keyed hash) whenever this node holds that
receiver's published key; a body for several receivers gets one MAC each. It is signed instead (ed25519, once
per body whatever the number of receivers) when the receiver may not hold our key: a sync request (its
receiver answers even a node it does not know yet), the state sent back to such a node, or a receiver whose
key we do not have.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from drover.agent.gossip import codec
from drover.agent.gossip.codec import Kind
from drover.agent.gossip.config import Addr
from drover.agent.gossip.identity import NodeKey
from drover.agent.gossip.pairkeys import PairKeys
from drover.agent.gossip.replay import next_nonce


class Body:
    """One packed body, sealed per receiver; its signed form (when needed) is computed once."""

    __slots__ = ("_sealed", "data", "signed")

    def __init__(self, data: bytes, *, signed: bool = False) -> None:
        self.data = data
        self.signed = signed  # always sealed signed (a sync request)
        self._sealed: bytes | None = None


class Transmitter:
    def __init__(
        self, name: str, key: bytes, identity: NodeKey, pairs: PairKeys, max_packet: int, stats: dict[str, int]
    ) -> None:
        self.name = name
        self.key = key
        self.identity = identity
        self.pairs = pairs
        self.max_packet = max_packet
        self.stats = stats
        self.transport: asyncio.DatagramTransport | None = None
        self._nonce = 0

    def next_nonce(self) -> int:
        self._nonce = next_nonce(self._nonce, time.time_ns() // 1000)
        return self._nonce

    def pack(
        self, kind: Kind, seq: int, parts: Sequence[bytes], *, target: tuple[str, str, int] | None = None
    ) -> tuple[Body, list[int]]:
        """One body with as many of ``parts`` as fit; returns it and the indexes of the parts taken."""
        data, chosen = codec.pack(kind, self.name, seq, parts, self.max_packet, nonce=self.next_nonce(), target=target)
        return Body(data), chosen

    def pack_all(self, kind: Kind, parts: Sequence[bytes], *, reply: bool, signed: bool = False) -> list[Body]:
        """Every part, in as many bodies as needed (numbered on from one nonce); all of them signed when
        ``signed``, and a request for a reply (the last body) always, so that a receiver that does not know us
        yet can still answer it."""
        nonce = self.next_nonce()
        bodies = codec.pack_all(kind, self.name, 0, parts, self.max_packet, nonce=nonce, reply=reply)
        self._nonce = nonce + len(bodies) - 1  # pack_all numbered them on from ``nonce``
        return [Body(b, signed=signed or (reply and i == len(bodies) - 1)) for i, b in enumerate(bodies)]

    def seal(self, body: Body, to: str | None) -> bytes:
        pair_key = None if body.signed or to is None else self.pairs.get(to)
        if pair_key is not None:
            return codec.seal_pair(self.name, body.data, pair_key)
        if body._sealed is None:
            body._sealed = codec.seal_signed(self.name, body.data, self.key, self.identity)
            self.stats["signed_out"] += 1
        return body._sealed

    def send(self, body: Body, to: str | None, addr: Addr) -> None:
        """Seal ``body`` for ``to`` (None: a receiver whose name we do not know) and send it."""
        if self.transport is None:
            return
        data = self.seal(body, to)
        self.stats["packets_out"] += 1
        self.stats["bytes_out"] += len(data)
        self.transport.sendto(data, addr)
