"""``admit``: what of an incoming gossip record a node may merge (pure: state, key directory, verifier in).

Origin-signed records are checked, only when they would change the state (a known record costs no signature
check), against the key the origin published. An unsigned record is accepted only as a suspicion or a death of
a member at exactly the epoch and incarnation that member last announced itself, and only its status is taken:
a member can say "I could not reach B" (SWIM), never what B's address, endpoints or incarnation are, so B's
signed refutation (a higher incarnation) always wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from drover.agent.gossip import codec
from drover.agent.gossip.codec import Received
from drover.agent.gossip.identity import Verifier
from drover.agent.gossip.state import ClusterState, Member, Status, Update

CLAIMS = frozenset({Status.SUSPECT, Status.DEAD})  # what any member may say about another


def admit(
    rec: Received, state: ClusterState, keys: Mapping[str, bytes], verifier: Verifier
) -> tuple[Update | None, str | None]:
    """(the update to merge or None, the drop counter to bump or None: stale news is not counted)."""
    u = rec.update
    if rec.sig is not None:
        if not state.newer(u):
            return None, None
        public = keys.get(u.name if isinstance(u, Member) else u.origin)
        if public is None:
            return None, "dropped_unknown_origin"
        if not codec.verify_record(rec, public, verifier):
            return None, "dropped_forged"
        return u, None
    cur = state.members.get(u.name) if isinstance(u, Member) else None
    if not isinstance(u, Member) or u.status not in CLAIMS or cur is None:
        return None, "dropped_unsigned"
    if (u.epoch, u.incarnation) < (cur.epoch, cur.incarnation):
        return None, None  # stale gossip, not an attack
    if (u.epoch, u.incarnation) != (cur.epoch, cur.incarnation):
        return None, "dropped_unsigned"
    claim = replace(cur, status=u.status)
    return (claim if state.newer(claim) else None), None
