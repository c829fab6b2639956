"""``FailureDetector``: SWIM failure detection for one gossip node.

One member is probed per ``probe_interval`` (round-robin over a shuffled list of live peers): a ``PING``
answered by an ``ACK`` within ``probe_timeout``, else a ``PING_REQ`` through ``indirect_k`` other members,
else the member is suspected; a suspicion not refuted within the suspicion timeout becomes a death. It
also relays the pings other members ask of this node (``PING_REQ``) and their acks. Sending and applying
a verdict are the node's (``send``, ``verdict``); the suspicion rules are pure, in ``state.py``.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drover.agent.gossip.codec import Kind
from drover.agent.gossip.config import Addr, GossipConfig
from drover.agent.gossip.state import (
    UP,
    ClusterState,
    Member,
    Status,
    expired_suspects,
    scaled_suspicion_timeout,
    suspect,
)

Send = Callable[..., None]  # (kind, seq, to, addr, *, target=None): a datagram with piggy-backed updates for ``to``


@dataclass
class Probe:
    target: str
    incarnation: int
    seq: int
    sent: float
    indirect: bool = False


class FailureDetector:
    def __init__(
        self,
        name: str,
        state: ClusterState,
        config: GossipConfig,
        rng: random.Random,
        stats: dict[str, int],
        log: Any,
        *,
        peers: Callable[[], list[Member]],
        send: Send,
        verdict: Callable[[Member, float], None],
    ) -> None:
        self.name = name
        self.state = state
        self.config = config
        self.rng = rng
        self.stats = stats
        self.log = log
        self.peers = peers
        self.send = send
        self.verdict = verdict
        self.seq = itertools.count(rng.randrange(1 << 30))
        self.probe: Probe | None = None
        self.order: list[str] = []
        self.relays: dict[int, tuple[str, Addr, int, float]] = {}  # our seq -> (asker, its address, its seq, expiry)
        self.suspected: dict[str, tuple[int, float]] = {}  # member -> (incarnation, suspected since)

    def next_target(self) -> Member | None:
        for _ in range(2):
            while self.order:
                m = self.state.members.get(self.order.pop())
                if m is not None and m.status in UP and m.name != self.name:
                    return m
            self.order = [m.name for m in self.peers()]
            self.rng.shuffle(self.order)
        return None

    def probe_tick(self, now: float) -> None:
        target = self.next_target()
        if target is None:
            return
        seq = next(self.seq)
        self.probe = Probe(target.name, target.incarnation, seq, now)
        self.stats["probes"] += 1
        self.send(Kind.PING, seq, target.name, (target.address, target.port))

    def check_probe(self, now: float) -> None:
        p = self.probe
        if p is None:
            return
        m = self.state.members.get(p.target)
        if m is None or m.status not in UP:
            self.probe = None
            return
        if not p.indirect and now - p.sent >= self.config.probe_timeout:
            p.indirect = True
            helpers = [h for h in self.peers() if h.name != p.target]
            for h in self.rng.sample(helpers, min(len(helpers), self.config.indirect_k)):
                self.stats["indirect_probes"] += 1
                self.send(Kind.PING_REQ, p.seq, h.name, (h.address, h.port), target=(m.name, m.address, m.port))
        if now - p.sent >= self.config.probe_interval:
            self.probe = None
            self.stats["probe_failures"] += 1
            if m.status is Status.ALIVE and m.incarnation == p.incarnation:
                self.log.debug("probe failed, suspecting", member=m.name)
                self.verdict(suspect(m), now)

    def check_suspects(self, now: float) -> None:
        if not self.suspected:
            return
        n = sum(1 for m in self.state.members.values() if m.status in UP)
        timeout = scaled_suspicion_timeout(self.config.suspicion_timeout, n, scale=self.config.scale_suspicion)
        for dead in expired_suspects(self.state.members, self.suspected, now, timeout):
            self.log.info("member declared dead", member=dead.name, incarnation=dead.incarnation)
            self.verdict(dead, now)

    def acked(self, seq: int) -> tuple[str, Addr, int] | None:
        """An ACK for ``seq`` came: ends our probe, or returns (asker, its address, its seq) when it answers a
        relayed ping."""
        if self.probe is not None and self.probe.seq == seq:
            self.probe = None
        relay = self.relays.pop(seq, None)
        return None if relay is None else relay[:3]

    def relay(self, asker: str, asker_addr: Addr, seq: int, target: tuple[str, str, int], now: float) -> None:
        """Ping ``target`` (name, address, port) on behalf of ``asker`` (a ``PING_REQ``); its ack goes back under
        ``seq``."""
        ours = next(self.seq)
        self.relays[ours] = (asker, asker_addr, seq, now + self.config.probe_interval)
        self.send(Kind.PING, ours, target[0], (target[1], target[2]))

    def gc(self, now: float) -> None:
        for seq, (_, _, _, expires) in list(self.relays.items()):
            if now >= expires:
                del self.relays[seq]
