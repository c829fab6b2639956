"""The receiving end's screen: a datagram becomes a ``Message`` only when it decodes within bounds, carries
the cluster key's MAC, is signed by the sender named in it (a key in the directory) and is fresh in that
sender's replay window. Every drop is counted by reason; nothing here raises."""

from __future__ import annotations

import time
from collections.abc import Mapping

import structlog

from drover.agent.gossip import codec
from drover.agent.gossip.codec import Kind, Message, PacketError
from drover.agent.gossip.config import Addr
from drover.agent.gossip.identity import Verifier
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
    verifier: Verifier, replay: ReplayGuard, stats: dict[str, int],
) -> Screened:
    stats["packets_in"] += 1
    stats["bytes_in"] += len(data)
    try:
        msg = codec.decode(data, key, max_packet)
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
    try:
        codec.verify_sender(msg, keys.get(msg.sender), verifier)
    except (codec.UnknownSenderError, codec.SignatureError) as exc:
        unknown = isinstance(exc, codec.UnknownSenderError)
        stats["dropped_unknown_sender" if unknown else "dropped_signature"] += 1
        # A node (re)registers its key only once it has heard a peer: a new node, or one restarted with a new
        # key, gets our state (which it can verify; the cluster key already let it read gossip), but nothing
        # it says is taken until its key is in the directory.
        return Screened(None, send_state=msg.kind is Kind.SYNC and msg.reply)
    if msg.sender == me or not replay.admit(msg.sender, msg.nonce, time.time_ns() // 1000):
        stats["dropped_replay"] += 1
        return Screened(None)
    return Screened(msg)
