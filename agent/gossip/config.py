"""The gossip layer's settings (``GossipConfig``), its counter names, and the address type of a peer."""

from __future__ import annotations

from dataclasses import dataclass

Addr = tuple[str, int]
Target = tuple[str, str, int]  # an indirect probe's target: name, address, port

STAT_KEYS = (
    "packets_in",
    "packets_out",
    "bytes_in",
    "bytes_out",
    "dropped_malformed",
    "dropped_auth",
    "dropped_oversize",
    "dropped_version",
    "dropped_implausible",
    "dropped_unknown_sender",  # datagram from a node with no published key
    "dropped_signature",  # datagram whose pair MAC or signature does not verify (forged or tampered with)
    "dropped_replay",  # datagram older than the replay window, or seen before
    "dropped_unknown_origin",  # signed record of a node with no published key
    "dropped_forged",  # record whose origin signature does not verify
    "dropped_unsigned",  # unsigned record that is not a suspicion/death at the origin's announced incarnation
    "handler_errors",
    "callback_errors",
    "send_errors",
    "probes",
    "probe_failures",
    "indirect_probes",
    "suspected",
    "declared_dead",
    "refutations",
    "syncs",
    "signed_out",  # datagrams signed (ed25519) rather than pair-MAC'd: sync requests, answers to unknown nodes
    "signed_in",  # signed datagrams whose signature was checked
)


@dataclass
class GossipConfig:
    probe_interval: float = 0.2
    probe_timeout: float = 0.1
    indirect_k: int = 3
    suspicion_timeout: float = 0.6
    scale_suspicion: bool = False  # multiply suspicion_timeout by log10(cluster size)
    fanout: int = 3
    gossip_interval: float = 0.1
    retransmit_mult: int = 4
    max_packet: int = 1400
    max_packets_per_push: int = 4  # datagrams per peer per gossip round when many updates are queued
    sync_interval: float = 2.0
    reap_after: float = 60.0  # forget dead/left members (and their entries) after this long
    tombstone_ttl: float = 60.0  # forget endpoint tombstones after this long
    replay_window: float = 60.0  # drop datagrams whose sender nonce (wall clock) is older than this (s)
    replay_per_sender: int = 256  # nonces remembered per sender (the replay window's memory bound)
