"""Pure: which assignment the agent acts on (ordering by KV revision, fencing by controller term)."""

from __future__ import annotations

from collections.abc import Callable

from drover.shared.errors import WireError
from drover.shared.models import Assignment


class AssignmentGate:
    """Accepts a newer assignment unless it comes from a lower controller term than one already seen.

    Watch entries arrive in revision order but may interleave with the periodic authoritative re-read, so
    a watch entry at or below the revision in hand is ignored; a re-read is taken whenever its revision
    differs (the store may have been reset). A deleted key means "nothing assigned".

    ``max_term``: the highest term accepted before (persisted across restarts); ``on_term`` is called with a
    new highest term before the assignment carrying it is handed out (so it is kept before it is acted on).
    """

    def __init__(self, node: str, *, max_term: int = -1, on_term: Callable[[int], None] | None = None):
        self.node = node
        self.max_term = max_term
        self.on_term = on_term
        self.revision = -1
        self.current: Assignment | None = None  # None: never seen one
        self.rejected = 0

    def offer(self, value: bytes | None, revision: int, *, authoritative: bool) -> Assignment | None:
        """The newly accepted assignment, or None when nothing changes. Raises WireError if undecodable."""
        if not authoritative and revision <= self.revision:
            return None
        if authoritative and revision == self.revision:
            return None
        if not value:
            new = Assignment(node=self.node, term=max(self.max_term, 0), containers=[])
        else:
            new = Assignment.from_wire(value)
        if new.term < self.max_term:
            self.rejected += 1
            return None
        if new.term > self.max_term and self.on_term is not None:
            self.on_term(new.term)
        self.max_term = max(self.max_term, new.term)
        self.revision = revision
        self.current = new
        return new


__all__ = ["AssignmentGate", "WireError"]
