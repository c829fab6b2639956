"""The receiving end's screen: a datagram becomes a ``Message`` only when it decodes within bounds, is
authenticated as coming from the sender named in it, and is fresh in that sender's replay window. Every drop
is counted by reason; nothing here raises.

Authenticated means: a PAIR datagram's MAC verifies with the key this node shares with the sender (derived
from the sender's published key, so only the sender could have made it); a SIGNED datagram carries the
cluster key's MAC and the sender's ed25519 signature, checked against its published key. A sync request
from a sender we cannot authenticate (not in the directory yet, or re-keyed) is answered with our state,
signed, but nothing it says is taken.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import structlog

from drover.agent.gossip import codec
from drover.agent.gossip.codec import Kind, Message, Mode, PacketError
from drover.agent.gossip.config import Addr
from drover.agent.gossip.identity import Verifier
from drover.agent.gossip.pairkeys import PairKeys
from drover.agent.gossip.replay import ReplayGuard

log = structlog.get_logger("drover.gossip")


class Screened:
    """What to do with one datagram: handle ``message``, or (``send_state``) only answer with our state."""

    __slots__ = ("message", "send_state")

    def __init__(self, message: Message | None, send_state: bool = False) -> None:
        self.message = message
        self.send_state = send_state


def screen(
    data: bytes, addr: Addr, *, me: str, key: bytes, max_packet: int, keys: Mapping[str, bytes],
    pairs: PairKeys, verifier: Verifier, replay: ReplayGuard, stats: dict[str, int],
) -> Screened:
    stats["packets_in"] += 1
    stats["bytes_in"] += len(data)
    try:
        env = codec.open_envelope(data, max_packet)
        if env.mode is Mode.PAIR:
            pair_key = pairs.get(env.sender)
            if pair_key is None:  # not in the directory (or us: a datagram of ours sent back)
                stats["dropped_replay" if env.sender == me else "dropped_unknown_sender"] += 1
                return Screened(None)
            if not codec.pair_ok(env, pair_key):
                stats["dropped_signature"] += 1
                return Screened(None)
            msg = codec.decode_body(env)
        else:
            if not codec.cluster_ok(env, key):
                raise codec.AuthError("bad cluster MAC")
            msg = codec.decode_body(env)
            public = keys.get(msg.sender)
            if public is not None:
                stats["signed_in"] += 1
            if public is None or not codec.signature_ok(env, public, verifier):
                stats["dropped_signature" if public is not None else "dropped_unknown_sender"] += 1
                # A node (re)registers its key only once it has heard a peer: a new node, or one restarted with
                # a new key, gets our state (signed: it can verify that), but nothing it says is taken until
                # its key is in the directory.
                return Screened(None, send_state=msg.kind is Kind.SYNC and msg.reply and msg.sender != me)
    except codec.OversizeError:
        stats["dropped_oversize"] += 1
        return Screened(None)
    except codec.AuthError:
        stats["dropped_auth"] += 1
        return Screened(None)
    except codec.VersionError:
        stats["dropped_version"] += 1
        return Screened(None)
    except PacketError as exc:
        stats["dropped_malformed"] += 1
        log.debug("malformed gossip datagram dropped", node=me, peer=f"{addr[0]}:{addr[1]}", error=str(exc))
        return Screened(None)
    if msg.sender == me or not replay.admit(msg.sender, msg.nonce, time.time_ns() // 1000):
        stats["dropped_replay"] += 1
        return Screened(None)
    return Screened(msg)
