"""Node status transitions as events: a node lost or back, or most nodes silent at once (a control-plane
disruption, during which nothing is evicted). The plan acts on the level; this only tells and holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drover.controller.freshness import DISRUPTION_HOLD_GRACES, disrupted, evictions_held
from drover.controller.snapshot import Snapshot, node_status
from drover.shared.models import NodeStatus

Post = Callable[..., None]


class NodeWatch:
    def __init__(self, post: Post, restart_silence_clock: Callable[[float], None], kick: Callable[[], None]):
        self._post = post
        self._restart_silence_clock = restart_silence_clock
        self._kick = kick
        self._status: dict[str, NodeStatus] = {}
        self._disrupted = False
        self._disrupted_since: float | None = None

    def moved(self, nodes: dict[str, Any], now: float, grace: float) -> list[str]:
        """The nodes whose status differs from what the last pass saw (e.g. their heartbeats ran out), and
        nodes the last pass saw that are gone."""
        out = [name for name, n in nodes.items() if node_status(n, now, grace) != self._status.get(name)]
        return out + [name for name in self._status if name not in nodes]

    def transitions(self, snap: Snapshot) -> bool:
        """Tell (as events) when a node is lost or comes back, or when most nodes fall silent at once (a
        control-plane disruption: then no node is called lost); the plan acts on the level, not on these.
        True when a disruption just ended: every node's silence clock restarts (as Kubernetes resets its
        probe timestamps then), so the nodes whose heartbeats resume a moment later than the first ones are
        not taken for lost, and this pass (planned on the old clock) is skipped."""
        statuses = {name: node_status(node, snap.now, snap.node_grace) for name, node in snap.nodes.items()}
        silent = sum(st is NodeStatus.LOST for st in statuses.values())
        if not disrupted(silent, len(statuses)):
            self._disrupted_since = None
        elif self._disrupted_since is None or silent >= len(statuses):
            # (the hold runs only while some nodes are heard: with all silent nothing tells them apart)
            self._disrupted_since = snap.now
        snap.disrupted_since = self._disrupted_since
        hold = DISRUPTION_HOLD_GRACES * snap.node_grace
        now_disrupted = evictions_held(silent, len(statuses), self._disrupted_since, snap.now, hold)
        if now_disrupted != self._disrupted:
            self._disrupted = now_disrupted
            if now_disrupted:
                self._post("control-plane-disrupted", message=(
                    f"{silent} of {len(statuses)} nodes silent at once: treated as a control-plane disruption, "
                    f"nothing is evicted or moved until heartbeats resume (at most {hold:g}s while other "
                    "nodes are still heard)"))
            elif self._disrupted_since is not None:
                # Still most nodes silent, but others have been heard all along: they are really gone.
                self._post("control-plane-disruption-expired", message=(
                    f"{silent} of {len(statuses)} nodes still silent after {hold:g}s while the others answer: "
                    "treating them as lost"))
            else:
                self._post("control-plane-recovered", message="heartbeats resumed; reconciling again")
                self._restart_silence_clock(snap.now)
                self._kick()
                return True
        if now_disrupted:
            return False
        for name in [n for n in self._status if n not in statuses]:
            del self._status[name]
        for name, status in statuses.items():
            before = self._status.get(name)
            self._status[name] = status
            if before is None or before == status:
                continue
            if status is NodeStatus.LOST:
                self._post("node-lost", node=name, message=f"no heartbeat for {snap.node_grace:g}s")
            elif before is NodeStatus.LOST:
                self._post("node-recovered", node=name, message="heartbeats resumed")
        return False
