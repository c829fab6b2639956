"""Repairing a damaged (undecodable) assignment: the pure rebuild from the controller's view, and the one CAS
write that replaces the damaged revision. Only the leader repairs; a repair that loses its CAS race is not
retried for that revision (the informer sees the newer value instead)."""

from __future__ import annotations

from collections.abc import Mapping

from drover.shared.models import AssignedContainer, Assignment, ContainerStatus, ServiceRecord


def rebuild_assignment(
    node: str,
    *,
    last_good: Assignment | None,
    observed: Mapping[str, ContainerStatus],
    services: Mapping[str, ServiceRecord],
    generation_seen: int,
    term: int,
) -> Assignment:
    """The assignment to write over a damaged one: the last good value this controller held if any, else
    what the node reports running (replicas of services still desired, with the spec of their revision), so
    that repairing never stops a healthy container. Its generation is above any the node has seen."""
    generation = max(last_good.generation if last_good else 0, generation_seen) + 1
    if last_good is not None:
        containers = list(last_good.containers)
    else:
        containers = []
        for rid, st in sorted(observed.items()):
            rec = services.get(st.service)
            if rec is None or rec.deleted:
                continue
            spec = rec.revision_spec(st.revision) or (rec.spec if st.revision == rec.revision else None)
            if spec is None:
                continue  # a revision no longer known: the plan replaces it
            containers.append(AssignedContainer(id=rid, service=st.service, revision=st.revision, spec=spec))
    return Assignment(node=node, generation=generation, term=term, containers=containers)
