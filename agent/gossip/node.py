"""``GossipNode``: SWIM membership and endpoint dissemination over UDP, one asyncio timer loop per node.

Each node
* probes one member per ``probe_interval`` (round-robin over a shuffled list): a ``PING`` answered by
  an ``ACK`` within ``probe_timeout``, else ``PING_REQ`` through ``indirect_k`` other members, else the
  member is suspected; a suspicion not refuted within ``suspicion_timeout`` becomes a death;
* piggy-backs recent updates (member records, endpoint entries) on every ping and ack, and also pushes
  them to ``fanout`` random members every ``gossip_interval`` and right away on a local change; each
  update is sent ``retransmit_mult * ceil(log10(n + 1))`` times in all;
* exchanges its full state with one random member every ``sync_interval`` (anti-entropy; this also
  retries seeds that are not members yet, and heals partitions);
* refutes suspicions and deaths about itself by raising its incarnation;
* signs the records it originates (ed25519, ``identity``), MACs every datagram with the receiver's pair key
  (``pairkeys.py``; signed if the receiver may not know us yet), and takes only datagrams authenticated as
  from a node of its key directory (``trust``: the keys in the nodes' registrations), fresh in the replay
  window, and in them origin-signed records or suspicion/death claims at the incarnation the origin
  announced (``admit.py``): no member can speak for another beyond "I could not reach it".

Merge rules: ``state.py`` (pure); datagrams: ``codec.py``; probing and suspicion: ``detector.py``; timetable:
``schedule.py``; datagram screen: ``inbound.py``; sending end: ``transmit.py``; retransmit queue:
``broadcast.py``; settings: ``config.py``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import structlog

from drover.agent.gossip import codec
from drover.agent.gossip.admit import admit
from drover.agent.gossip.broadcast import BroadcastQueue
from drover.agent.gossip.codec import Kind, Message, Received
from drover.agent.gossip.config import STAT_KEYS, Addr, Target
from drover.agent.gossip.config import GossipConfig as GossipConfig
from drover.agent.gossip.detector import FailureDetector
from drover.agent.gossip.identity import SHARED_VERIFIER, NodeKey
from drover.agent.gossip.inbound import screen
from drover.agent.gossip.pairkeys import PairKeys
from drover.agent.gossip.replay import ReplayGuard
from drover.agent.gossip.schedule import Duties, run_schedule
from drover.agent.gossip.state import (
    UP,
    ClusterState,
    Endpoint,
    EndpointEntry,
    EntryKey,
    Member,
    Status,
    Update,
    plausible,
    refute,
    update_key,
)
from drover.agent.gossip.transmit import Body, Transmitter
from drover.shared.tasks import Supervisor

log = structlog.get_logger("drover.gossip")


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, node: GossipNode) -> None:
        self.node = node

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.node._on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        self.node.stats["send_errors"] += 1


class GossipNode:
    def __init__(
        self,
        name: str,
        address: str,
        key: bytes,
        *,
        port: int = 0,
        config: GossipConfig = GossipConfig(),
        meta: dict[str, str] | None = None,
        incarnation: int | None = None,
        rng: random.Random | None = None,
        identity: NodeKey | None = None,
    ) -> None:
        if not key:
            raise ValueError("the gossip cluster key must not be empty")
        self.name = name
        self.address = address
        self.key = key
        self.identity = identity or NodeKey.generate()
        self._keys: dict[str, bytes] = {name: self.identity.public}  # the key directory (``trust``)
        self._verifier = SHARED_VERIFIER
        self._pairs = PairKeys(name, self.identity, key, self._keys)
        self._replay = ReplayGuard(config.replay_window, config.replay_per_sender)
        # The exact wire form of the record held for each key (origin-signed ones are forwarded unchanged)
        self._wire: dict[tuple[Any, ...], tuple[Update, bytes]] = {}
        self.config = config
        self._port = port
        self._meta = tuple(sorted((meta or {}).items()))
        # Incarnations (and the epoch of this life's endpoints) start from the wall clock in ms, so a
        # restarted node outranks everything its previous life said.
        self._epoch = incarnation if incarnation is not None else time.time_ns() // 1_000_000
        self._incarnation = self._epoch
        self._counter = 0
        self._rng = rng or random.Random()
        self.state = ClusterState()
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self._tx = Transmitter(name, key, self.identity, self._pairs, config.max_packet, self.stats)
        self._log = log.bind(node=name)
        self._detector = FailureDetector(
            name,
            self.state,
            config,
            self._rng,
            self.stats,
            self._log,
            peers=self._peers,
            send=self._send_piggyback,
            verdict=self._apply_local,
        )
        self._me: Member | None = None
        self._local: dict[tuple[str, int], EndpointEntry] = {}
        self._queue = BroadcastQueue(config.retransmit_mult)  # updates still to piggy-back
        self._seeds: dict[str, Addr] = {}
        self._down_since: dict[str, float] = {}
        self._tomb_since: dict[EntryKey, float] = {}
        self._callbacks: list[Callable[[], None]] = []
        self._transport: asyncio.DatagramTransport | None = None
        self._supervisor: Supervisor | None = None
        if len(self._signed(self._self_record(1))) > config.max_packet // 2:  # also fails early on bad meta
            raise ValueError("member meta is too large for a gossip datagram")

    # ------------------------------------------------------------------ public API
    @property
    def port(self) -> int:
        return self._port

    @property
    def public_key(self) -> bytes:
        return self.identity.public

    def trust(self, keys: Mapping[str, bytes]) -> None:
        """Set the key directory: every other node's published ed25519 public key (its registration's)."""
        self._keys = {**{n: k for n, k in keys.items() if n != self.name}, self.name: self.identity.public}
        self._replay.forget(self._keys)
        self._pairs.trust(self._keys)  # pair keys of peers whose published key changed are derived anew

    @property
    def incarnation(self) -> int:
        return self._me.incarnation if self._me else self._incarnation

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.address, self._port)
        )
        self._transport = self._tx.transport = transport
        self._port = int(transport.get_extra_info("sockname")[1])
        me = self._self_record(self._port)
        self._me = me
        self.state.merge_member(me)
        self._queue.add(me, self._remember(me, self._signed(me)))
        for e in self._local.values():
            self.state.merge_entry(e)
        self._supervisor = Supervisor(f"gossip:{self.name}")
        self._supervisor.start("loop", self._run)
        self._sync_seeds()
        self._log.debug("gossip started", address=self.address, port=self._port)
        return self._port

    async def stop(self, *, leave: bool = True) -> None:
        """Stop; with ``leave`` (the default) first tell a few members that this node left."""
        if self._transport is None:
            return
        if leave and self._me is not None:
            left = replace(self._me, status=Status.LEFT)
            self._me = left
            self.state.merge_member(left)
            body, _ = self._tx.pack(Kind.GOSSIP, 0, [self._signed(left)])
            peers = self._peers()
            for m in self._rng.sample(peers, min(len(peers), max(2 * self.config.fanout, 6))):
                self._tx.send(body, m.name, (m.address, m.port))
        if self._supervisor is not None:
            await self._supervisor.stop()
            self._supervisor = None
        self._transport.close()
        self._transport = self._tx.transport = None

    def join(self, seeds: Iterable[tuple[str, str, int]]) -> None:
        for name, address, port in seeds:
            if name != self.name and port:
                self._seeds[name] = (address, port)
        if self._transport is not None:
            self._sync_seeds()

    def set_local_endpoints(self, endpoints: Iterable[Endpoint]) -> None:
        wanted: dict[tuple[str, int], Endpoint] = {}
        for ep in endpoints:
            if ep.node != self.name:
                ep = replace(ep, node=self.name)
            wanted[(ep.container, ep.port)] = ep
        changed: list[EndpointEntry] = []
        for k, ep in wanted.items():
            cur = self._local.get(k)
            if cur is None or not cur.present or cur.endpoint != ep:
                self._counter += 1
                changed.append(EndpointEntry(ep, self._epoch, self._counter, True))
        for k, cur in self._local.items():
            if cur.present and k not in wanted:
                self._counter += 1
                changed.append(EndpointEntry(cur.endpoint, self._epoch, self._counter, False))
        if not changed:
            return
        now = self._now()
        for e in changed:
            self._set_local(e, now)
        if self._transport is not None:
            self._gossip_round()
        self._notify()

    def endpoints(self, service: str | None = None, *, ready_only: bool = True) -> list[Endpoint]:
        return self.state.endpoints(service, ready_only=ready_only)

    def members(self) -> list[Member]:
        return sorted(self.state.members.values(), key=lambda m: m.name)

    def member(self, name: str) -> Member | None:
        return self.state.members.get(name)

    def on_change(self, cb: Callable[[], None]) -> None:
        self._callbacks.append(cb)

    # ------------------------------------------------------------------ local state
    def _self_record(self, port: int) -> Member:
        return Member(self.name, self.address, port, self._incarnation, Status.ALIVE, self._epoch, self._meta)

    def _signed(self, u: Update) -> bytes:
        return codec.encode_update(u, self.identity)

    def _remember(self, u: Update, wire: bytes) -> bytes:
        self._wire[update_key(u)] = (u, wire)
        return wire

    def _wire_of(self, u: Update) -> bytes | None:
        """What to send for a record held in the state: its stored wire form, else (our own verdicts) a plain
        suspicion/death claim; None for anything that would need another node's signature we do not have."""
        held = self._wire.get(update_key(u))
        if held is not None and held[0] == u:
            return held[1]
        if isinstance(u, Member) and u.status in (Status.SUSPECT, Status.DEAD):
            return self._remember(u, codec.encode_update(u))
        return None

    def _now(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()

    def _set_local(self, e: EndpointEntry, now: float) -> None:
        k = (e.endpoint.container, e.endpoint.port)
        self._local[k] = e
        if self._me is not None:
            self.state.merge_entry(e)
        self._queue.add(e, self._remember(e, self._signed(e)))
        if e.present:
            self._tomb_since.pop(e.key(), None)
        else:
            self._tomb_since[e.key()] = now

    def _set_self(self, me: Member, now: float) -> None:
        epoch_moved = me.epoch != self._epoch
        self._me = me
        self._incarnation = me.incarnation
        self.state.merge_member(me)
        self._queue.add(me, self._remember(me, self._signed(me)))
        if epoch_moved:
            # an earlier life of this node used a later epoch: re-issue every local entry under ours
            self._epoch = me.epoch
            for e in list(self._local.values()):
                self._counter += 1
                self._set_local(replace(e, epoch=self._epoch, counter=self._counter), now)

    def _refute(self, claim: Member, now: float) -> bool:
        if self._me is None:
            return False
        new = refute(self._me, claim)
        if new is None:
            return False
        self.stats["refutations"] += 1
        self._log.info("refuting", claim=claim.status.value, incarnation=new.incarnation)
        self._set_self(new, now)
        return True

    def _own_entry_seen(self, e: EndpointEntry, now: float) -> bool:
        """Someone holds an entry of ours: keep our Lamport counter ahead, and correct stale ones."""
        if self._me is None:
            return False
        if e.epoch > self._epoch:
            inc = max(self._me.incarnation, e.epoch) + 1
            self._set_self(replace(self._me, incarnation=inc, status=Status.ALIVE, epoch=inc), now)
            return True
        if e.epoch < self._epoch:
            return False
        self._counter = max(self._counter, e.counter)
        k = (e.endpoint.container, e.endpoint.port)
        cur = self._local.get(k)
        if (cur is None and e.present) or (cur is not None and e.order() > cur.order()):
            self._counter += 1
            base = cur if cur is not None else replace(e, present=False)
            self._set_local(replace(base, counter=self._counter), now)
            return True
        return False

    # ------------------------------------------------------------------ merging remote updates
    def _apply(self, records: Iterable[Received], now: float) -> None:
        changed = False
        now_ms = time.time_ns() // 1_000_000
        # origin-signed records first: a refutation and a suspicion at its new incarnation in one datagram
        for rec in sorted(records, key=lambda r: r.sig is None):
            if self._wire.get(update_key(rec.update), (None, b""))[1] == rec.wire:
                continue  # exactly the record held (and forwarded) already, as most of a sync: nothing to check
            if not plausible(rec.update, now_ms):
                self.stats["dropped_implausible"] += 1
                continue
            u, drop = admit(rec, self.state, self._keys, self._verifier)
            if drop is not None:
                self.stats[drop] += 1
            if u is None:
                continue
            wire = rec.wire if u is rec.update else codec.encode_update(u)
            if isinstance(u, Member):
                if u.name == self.name:
                    changed |= self._refute(u, now)
                    continue
                if self.state.merge_member(u):
                    changed = True
                    self._queue.add(u, self._remember(u, wire))
                    self._track(u, now)
            else:
                if u.origin == self.name:
                    changed |= self._own_entry_seen(u, now)
                    continue
                if self.state.merge_entry(u):
                    changed = True
                    self._queue.add(u, self._remember(u, wire))
                    if u.present:
                        self._tomb_since.pop(u.key(), None)
                    else:
                        self._tomb_since[u.key()] = now
        if changed:
            self._notify()

    def _apply_local(self, m: Member, now: float) -> None:
        """A verdict of this node about another member (suspect, dead)."""
        if self.state.merge_member(m):
            self._queue.add(m, self._remember(m, codec.encode_update(m)))
            self._track(m, now)
            self._notify()

    def _track(self, m: Member, now: float) -> None:
        if m.status is Status.SUSPECT:
            self._detector.suspected[m.name] = (m.incarnation, now)
            self.stats["suspected"] += 1
        else:
            self._detector.suspected.pop(m.name, None)
        if m.status in UP:
            self._down_since.pop(m.name, None)
        else:
            self._down_since.setdefault(m.name, now)
            if m.status is Status.DEAD:
                self.stats["declared_dead"] += 1

    def _notify(self) -> None:
        for cb in list(self._callbacks):
            try:
                cb()
            except Exception as exc:
                self.stats["callback_errors"] += 1
                self._log.error("gossip change callback failed", error=repr(exc), exc_info=True)

    # ------------------------------------------------------------------ sending
    def _send_piggyback(self, kind: Kind, seq: int, to: str, addr: Addr, *, target: Target | None = None) -> None:
        items = self._queue.queued()
        body, chosen = self._tx.pack(kind, seq, [d for _, d in items], target=target)
        self._queue.mark_sent((items[i][0] for i in chosen), len(self.state.members))
        self._tx.send(body, to, addr)

    def _send_state(self, to: str | None, addr: Addr, *, reply: bool, signed: bool = False) -> None:
        self.stats["syncs"] += 1
        parts = [w for w in map(self._wire_of, self.state.snapshot()) if w is not None]
        for body in self._tx.pack_all(Kind.SYNC, parts, reply=reply, signed=signed):
            self._tx.send(body, to, addr)

    def _peers(self) -> list[Member]:
        return [m for m in self.state.members.values() if m.status in UP and m.name != self.name]

    def _gossip_round(self) -> None:
        if not self._queue:
            return
        peers = self._peers()
        targets = self._rng.sample(peers, min(len(peers), self.config.fanout))
        if not targets:
            return
        # The same bodies go to every target (each receiver's replay window is its own), packed once and
        # sealed per target (a pair MAC each).
        items = self._queue.queued()
        packets: list[Body] = []
        for _ in range(self.config.max_packets_per_push):
            if not items:
                break
            data, chosen = self._tx.pack(Kind.GOSSIP, 0, [d for _, d in items])
            if not chosen:
                break
            packets.append(data)
            for _ in targets:
                self._queue.mark_sent((items[i][0] for i in chosen), len(self.state.members))
            taken = set(chosen)
            items = [it for i, it in enumerate(items) if i not in taken]
        for m in targets:
            for body in packets:
                self._tx.send(body, m.name, (m.address, m.port))

    def _sync_seeds(self) -> None:
        for name, addr in self._seeds.items():
            if not self.state.up(name):
                self._send_state(name, addr, reply=True)

    def _sync_tick(self) -> None:
        peers = self._peers()
        dead = [m for m in self.state.members.values() if m.status is Status.DEAD]
        pool = dead if dead and (not peers or self._rng.random() < 0.25) else peers
        if pool:
            m = self._rng.choice(pool)
            self._send_state(m.name, (m.address, m.port), reply=True)
        self._sync_seeds()

    # ------------------------------------------------------------------ housekeeping
    def _gc(self, now: float) -> None:
        for name, since in list(self._down_since.items()):
            if now - since >= self.config.reap_after:
                del self._down_since[name]
                self.state.forget_member(name)
        for key, since in list(self._tomb_since.items()):
            if now - since >= self.config.tombstone_ttl:
                del self._tomb_since[key]
                e = self.state.entries.get(key)
                if e is not None and not e.present:
                    self.state.forget_entry(key)
                if key[0] == self.name:
                    lk = (key[1], key[2])
                    le = self._local.get(lk)
                    if le is not None and not le.present:
                        del self._local[lk]
        self._detector.gc(now)
        live = {update_key(u) for u in self.state.snapshot()}
        for k in [k for k in self._wire if k not in live]:
            del self._wire[k]

    async def _run(self) -> None:
        d = self._detector
        duties = Duties(d.check_probe, d.probe_tick, self._gossip_round, d.check_suspects, self._sync_tick, self._gc)
        await run_schedule(self.config, self._rng, duties)

    # ------------------------------------------------------------------ receiving
    def _on_datagram(self, data: bytes, addr: Addr) -> None:
        got = screen(
            data, addr, me=self.name, key=self.key, max_packet=self.config.max_packet, keys=self._keys,
            pairs=self._pairs, verifier=self._verifier, replay=self._replay, stats=self.stats,
        )
        if got.send_state:  # to a node that may not hold our key, or holds an old one: signed
            self._send_state(None, addr, reply=False, signed=True)
        if got.message is None:
            return
        try:
            self._handle(got.message, addr)
        except Exception as exc:
            self.stats["handler_errors"] += 1
            self._log.error("gossip message handling failed", error=repr(exc), exc_info=True)

    def _handle(self, msg: Message, addr: Addr) -> None:
        now = self._now()
        if msg.records:
            self._apply(msg.records, now)
        if msg.kind is Kind.PING:
            self._send_piggyback(Kind.ACK, msg.seq, msg.sender, addr)
        elif msg.kind is Kind.ACK:
            relay = self._detector.acked(msg.seq)
            if relay is not None:
                self._send_piggyback(Kind.ACK, relay[2], relay[0], relay[1])
        elif msg.kind is Kind.PING_REQ and msg.target is not None:
            self._detector.relay(msg.sender, addr, msg.seq, msg.target, now)
        elif msg.kind is Kind.SYNC and msg.reply:
            self._send_state(msg.sender, addr, reply=False)
