"""Pure decisions for the workload modes and for replicas that keep their node (volumes).

No I/O, no clock: the controller's plan calls these with plain data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set

from drover.shared.models import AssignedContainer, Assignment


def sticky_homes(
    service: str,
    revision: int,
    before: Mapping[str, Assignment],
    work: Mapping[str, Sequence[AssignedContainer]],
    schedulable: Set[str],
    count: int,
) -> list[str]:
    """The nodes (one entry per replica, at most ``count``) that new replicas of a service with volumes should
    go to: a node that held a replica of another revision before this pass, once for each such replica not yet
    matched by one of ``revision`` there. A node that cannot take replicas now (lost, cordoned, draining) is no
    home: that data stays behind (the caller reports it)."""
    homes: list[str] = []
    for node in sorted(before):
        if node not in schedulable:
            continue
        old = sum(1 for c in before[node].containers if c.service == service and c.revision != revision)
        new = sum(1 for c in work.get(node, ()) if c.service == service and c.revision == revision)
        homes.extend([node] * max(0, old - new))
    return homes[:count]
