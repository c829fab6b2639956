"""Feasibility filters: can this node take one more replica of the request?

The chain, in order: schedulable, not avoided, constraints (in the request's order),
cpu fits, memory fits, the node's assignment stays within a NATS message. Each filter
returns None when the node passes or the reason it fails; a node's reason is the first
failing filter's. The planner evaluates the label-only part of the chain once per
feasibility class (nodes with the same labels and schedulable state) and the rest per
node; `node_reason` is the whole chain for one node (but the assignment, whose cost
depends on what the planner placed), used by plain callers and by tests as the reference.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from drover.shared.constraints import Constraint

from .model import NodeView

UNSCHEDULABLE = "unschedulable"
AVOIDED = "avoided"
INSUFFICIENT_CPU = "insufficient cpu"
INSUFFICIENT_MEMORY = "insufficient memory"
# One more replica would make the node's assignment more than the NATS server takes in one message.
ASSIGNMENT_FULL = "assignment over max_payload"


def constraint_reason(c: Constraint) -> str:
    return f"constraint {c.text}"


def check_schedulable(node: NodeView) -> str | None:
    return None if node.schedulable else UNSCHEDULABLE


def check_avoid(node: NodeView, avoid: frozenset[str] | set[str]) -> str | None:
    return AVOIDED if node.name in avoid else None


def first_failing_constraint(node: NodeView, constraints: Iterable[tuple[int, Constraint]]) -> tuple[int, str] | None:
    """(position in the request, reason) of the first constraint `node` fails, or None."""
    for pos, c in constraints:
        if not c.matches(node.name, node.labels):
            return pos, constraint_reason(c)
    return None


def check_constraints(node: NodeView, constraints: Sequence[Constraint]) -> str | None:
    hit = first_failing_constraint(node, enumerate(constraints))
    return None if hit is None else hit[1]


def cpu_fits(allocated: float, capacity: float, request: float) -> bool:
    """A zero request always fits; otherwise allocated + request must not exceed capacity."""
    return request <= 0 or allocated + request <= capacity


def mem_fits(allocated: int, capacity: int, request: int) -> bool:
    return request <= 0 or allocated + request <= capacity


def check_resources(
    cpu_allocated: float, cpu_capacity: float, mem_allocated: int, mem_capacity: int, cpu: float, memory: int
) -> str | None:
    if not cpu_fits(cpu_allocated, cpu_capacity, cpu):
        return INSUFFICIENT_CPU
    if not mem_fits(mem_allocated, mem_capacity, memory):
        return INSUFFICIENT_MEMORY
    return None


def assignment_fits(allocated: int, capacity: int, cost: int) -> bool:
    """A node's assignment bytes stay within its bound; a zero cost (no estimate asked for) always fits."""
    return cost <= 0 or allocated + cost <= capacity


def check_assignment(allocated: int, capacity: int, cost: int) -> str | None:
    return None if assignment_fits(allocated, capacity, cost) else ASSIGNMENT_FULL


def node_reason(
    node: NodeView,
    constraints: Sequence[Constraint],
    avoid: frozenset[str] | set[str],
    cpu: float,
    memory: int,
    cpu_allocated: float | None = None,
    mem_allocated: int | None = None,
) -> str | None:
    """The whole chain for one node (allocations default to the snapshot's)."""
    return (
        check_schedulable(node)
        or check_avoid(node, avoid)
        or check_constraints(node, constraints)
        or check_resources(
            node.cpu_allocated if cpu_allocated is None else cpu_allocated,
            node.cpu_capacity,
            node.mem_allocated if mem_allocated is None else mem_allocated,
            node.mem_capacity,
            cpu,
            memory,
        )
    )
