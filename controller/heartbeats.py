"""The controller's heartbeat intake: from a message on ``drover.<c>.hb.<node>`` (or a hollow fleet's
``drover.<c>.fleet.<prefix>.hb.<node>``) to the cluster state, as cheaply as the message allows (no I/O here;
``feed`` is called by the subscriptions' callback).

- The node is the subject's, given by the caller (NATS publish permissions decide who may speak for it); a
  body naming another node is dropped as bad.
- A heartbeat in parts (``shared/hbwire.py``: what agents send) is assembled per node; every part refreshes
  the node's time (a node with 10,000 replicas is heard even while its parts are on the way), and the state
  sees the heartbeat once all its parts are in. A newer heartbeat's part drops an incomplete older one.
- A complete heartbeat equal, byte for byte, to the node's previous one (the common case: nothing changed)
  only refreshes the node's time. Otherwise only the container entries not seen in the previous heartbeat
  are decoded and validated; the others keep their ``ContainerStatus`` objects.
- A heartbeat in the record format (one message with ``containers``, sent by agents of the previous
  version) is still accepted, compared as before.

Every message is dated by ``dating(sent, received)``: the controller passes its send time, bounded by the
arrival (``freshness.heartbeat_time``), so heartbeats read late from a paused controller's socket do not make
a node killed meanwhile look alive. The default dates by arrival.

Narrow dependencies: ``touch(node, now) -> bool`` (refresh a known, live node's time; False when that is not
enough) and ``apply(heartbeat, now) -> bool`` (record it; True when reconciliation should look again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from drover.shared import hbwire, wire
from drover.shared.errors import WireError
from drover.shared.models import ContainerStatus, Heartbeat

MAX_PENDING = 4096  # nodes with a heartbeat partly received, at most (the oldest incomplete one is dropped)


class Outcome(Enum):
    TOUCHED = "touched"  # nothing changed: the node's time was refreshed
    PARTIAL = "partial"  # a part of a heartbeat still incomplete
    APPLIED = "applied"  # the state recorded a heartbeat that changed nothing reconciliation looks at
    CHANGED = "changed"  # … that changed something: reconcile


@dataclass
class _Pending:
    boot_id: Any
    seq: Any
    blobs: list[bytes | None]
    header: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Last:
    key: tuple[Any, ...]
    statuses: dict[bytes, ContainerStatus] = field(default_factory=dict)  # packed entry -> its status


class HeartbeatIntake:
    def __init__(
        self, touch: Callable[[str, float], bool], apply: Callable[[Heartbeat, float], bool],
        dating: Callable[[Any, float], float] = lambda _sent, received: received,
    ) -> None:
        self.touch = touch
        self.apply = apply
        self.dating = dating
        self._last: dict[str, _Last] = {}
        self._pending: dict[str, _Pending] = {}
        self.incomplete_dropped = 0  # heartbeats of which a part never came (a newer one replaced them)

    def forget(self, node: str) -> None:
        self._last.pop(node, None)
        self._pending.pop(node, None)

    def feed(self, node: str, data: bytes, now: float) -> Outcome:
        """One heartbeat message on the subject of ``node`` (the caller takes the node from the subject the
        server authorised), received at ``now``; raises ``WireError`` for a bad one (the caller counts and logs it)."""
        body = wire.decode(data)
        if body.get("node") != node:
            raise WireError(f"heartbeat for node {body.get('node')!r} on the subject of node {node!r}")
        now = self.dating(body.get("time"), now)
        if not hbwire.is_parts(body):
            return self._record_format(node, body, now)
        part, parts = hbwire.part_numbers(body)
        blob: bytes = body.pop("cs")
        if parts == 1:
            self._pending.pop(node, None)
            return self._complete(node, body, [blob], now)
        p = self._pending.get(node)
        if p is None or p.boot_id != body.get("boot_id") or p.seq != body.get("seq") or len(p.blobs) != parts:
            if p is not None:
                self.incomplete_dropped += 1
                del self._pending[node]
            elif len(self._pending) >= MAX_PENDING:
                del self._pending[next(iter(self._pending))]
                self.incomplete_dropped += 1
            p = self._pending[node] = _Pending(body.get("boot_id"), body.get("seq"), [None] * parts)
        p.blobs[part] = blob
        if part == 0:
            p.header = body
        if any(b is None for b in p.blobs):
            self.touch(node, now)  # heard: the rest is on the way
            return Outcome.PARTIAL
        del self._pending[node]
        return self._complete(node, p.header, [b for b in p.blobs if b is not None], now)

    def _complete(self, node: str, header: dict[str, Any], blobs: list[bytes], now: float) -> Outcome:
        rps = header.get("service_rps")
        key = (header.get("boot_id"), header.get("generation"), repr(rps), *blobs)
        last = self._last.get(node)
        if last is not None and last.key == key and self.touch(node, now):
            return Outcome.TOUCHED
        hb = Heartbeat.from_dict({k: v for k, v in header.items() if k not in ("part", "parts")})
        known = last.statuses if last is not None else {}
        statuses: dict[bytes, ContainerStatus] = {}
        for blob in blobs:
            for entry in hbwire.entries(blob):
                status = known.get(entry)
                if status is None:
                    status = ContainerStatus.from_dict(hbwire.decode_entry(entry))
                statuses[entry] = status
        hb.containers = list(statuses.values())
        self._last[node] = _Last(key, statuses)
        return Outcome.CHANGED if self.apply(hb, now) else Outcome.APPLIED

    def _record_format(self, node: str, body: dict[str, Any], now: float) -> Outcome:
        key = ("record", body.get("boot_id"), body.get("generation"), body.get("containers"), body.get("service_rps"))
        last = self._last.get(node)
        if last is not None and last.key == key and self.touch(node, now):
            return Outcome.TOUCHED
        hb = Heartbeat.from_dict(body)
        self._last[node] = _Last(key)
        return Outcome.CHANGED if self.apply(hb, now) else Outcome.APPLIED
