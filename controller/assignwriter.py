"""Writing per-node assignments: the changed nodes' keys with compare-and-set, many at once, fenced by term;
a lost race reloads the stored value; a damaged key is rewritten once per damaged revision."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from drover.controller.feeds import StateFeeds
from drover.controller.metrics import ControllerMetrics
from drover.controller.repair import rebuild_assignment
from drover.controller.state import ClusterState
from drover.shared.models import Assignment

ASSIGNMENT_WRITES_IN_FLIGHT = 32


class AssignmentWriter:
    def __init__(
        self, kv: KeyValue, state: ClusterState, feeds: StateFeeds, metrics: ControllerMetrics, *,
        kick: Callable[[], None], step_down: Callable[[str], None], log: Any,
    ) -> None:
        self._kv = kv
        self._state = state
        self._feeds = feeds
        self._metrics = metrics
        self._kick = kick
        self._step_down = step_down
        self._log = log
        self._repair_tried: set[tuple[str, int]] = set()

    async def write(self, changes: dict[str, Any]) -> None:
        """Write the changed nodes' assignments, many at once (each a CAS on its own key, so they are
        independent; a pass that touches hundreds of nodes must not wait for them one round trip at a time)."""
        kv, state = self._kv, self._state
        limit = asyncio.Semaphore(ASSIGNMENT_WRITES_IN_FLIGHT)
        fenced: list[str] = []

        async def write(node: str, containers: Any) -> None:
            cur = state.assignments.get(node)
            if cur is not None and cur.value.term > state.term:
                # Fencing: a leader of a higher term wrote this node; never overwrite it with a lower term.
                fenced.append(f"assignment of {node} carries term {cur.value.term} > {state.term}")
                return
            generation = (cur.value.generation if cur else 0) + 1
            new = Assignment(node=node, generation=generation, term=state.term, containers=containers)
            data = new.to_wire()
            try:
                async with limit:
                    if cur is None:
                        rev = await kv.create(node, data)
                    else:
                        rev = await kv.update(node, data, last=cur.rev)
                state.set_assignment(node, new, rev)
                # Its echo from the watch is this very value: not decoded again (at 100,000 replicas the echoes
                # of a big apply were seconds of decoding on the event loop).
                self._feeds.assignments.hold(node, new, rev, data)
                self._metrics.assignments_written.inc()
            except KeyWrongLastSequenceError:
                await self.reload(node)
            except Exception as exc:
                self._log.warning("assignment write failed", node=node, error=str(exc))
                await self.reload(node)

        await asyncio.gather(*(write(node, containers) for node, containers in changes.items()))
        if fenced:
            self._step_down(fenced[0])

    async def reload(self, node: str) -> None:
        """A CAS write lost: take the stored value (through the informer's decode path) and plan again."""
        await self.refresh(node)
        self._kick()

    async def refresh(self, node: str) -> None:
        """Take the stored value of one node's assignment now (through the informer's decode path): an agent
        can act on a write it watched before this controller has taken in that write's own acknowledgement."""
        with contextlib.suppress(Exception):
            try:
                e = await self._kv.get(node)
                self._feeds.assignments.apply(node, e.value, e.revision or 0, e.operation)
            except KeyNotFoundError:
                self._feeds.assignments.apply(node, None, 1 << 62, "DEL")

    async def repair(self) -> None:
        """Rewrite each damaged assignment once per damaged revision, from this controller's view."""
        state = self._state
        for node, rev in list(self._feeds.damaged_assignments.items()):
            if (node, rev) in self._repair_tried:
                continue
            cur = state.assignments.get(node)
            ns = state.nodes.get(node)
            new = rebuild_assignment(
                node,
                last_good=cur.value if cur else None,
                observed=ns.observed if ns else {},
                services={n: v.value for n, v in state.services.items()},
                generation_seen=ns.generation_seen if ns else 0,
                term=state.term,
            )
            try:
                new_rev = await self._kv.update(node, new.to_wire(), last=rev)
            except KeyWrongLastSequenceError:
                self._repair_tried.add((node, rev))  # replaced meanwhile: the informer brings the new value
                continue
            self._repair_tried.add((node, rev))
            self._feeds.damaged_assignments.pop(node, None)
            state.set_assignment(node, new, new_rev)
            self._log.info("damaged assignment rewritten", node=node, revision=new_rev, replicas=len(new.containers))
