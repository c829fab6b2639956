"""``Transmitter``: the sending end of one gossip node: packs records into signed, numbered datagrams (a
nonce that only grows, also across restarts, for the receivers' replay windows) and sends them, counting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from drover.agent.gossip import codec
from drover.agent.gossip.codec import Kind
from drover.agent.gossip.config import Addr
from drover.agent.gossip.identity import NodeKey
from drover.agent.gossip.replay import next_nonce


class Transmitter:
    def __init__(self, name: str, key: bytes, identity: NodeKey, max_packet: int, stats: dict[str, int]) -> None:
        self.name = name
        self.key = key
        self.identity = identity
        self.max_packet = max_packet
        self.stats = stats
        self.transport: asyncio.DatagramTransport | None = None
        self._nonce = 0

    def next_nonce(self) -> int:
        self._nonce = next_nonce(self._nonce, time.time_ns() // 1000)
        return self._nonce

    def pack(
        self, kind: Kind, seq: int, parts: Sequence[bytes], *, target: tuple[str, str, int] | None = None
    ) -> tuple[bytes, list[int]]:
        """One datagram with as many of ``parts`` as fit; returns it and the indexes of the parts taken."""
        return codec.pack(
            kind, self.name, seq, parts, self.key, self.max_packet, signer=self.identity, nonce=self.next_nonce(),
            target=target,
        )

    def pack_all(self, kind: Kind, parts: Sequence[bytes], *, reply: bool) -> list[bytes]:
        """Every part, in as many datagrams as needed (numbered on from one nonce)."""
        nonce = self.next_nonce()
        packets = codec.pack_all(
            kind, self.name, 0, parts, self.key, self.max_packet, signer=self.identity, nonce=nonce, reply=reply
        )
        self._nonce = nonce + len(packets) - 1  # pack_all numbered them on from ``nonce``
        return packets

    def send(self, data: bytes, addr: Addr) -> None:
        if self.transport is None:
            return
        self.stats["packets_out"] += 1
        self.stats["bytes_out"] += len(data)
        self.transport.sendto(data, addr)
