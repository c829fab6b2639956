"""Scores: which feasible node takes the next replica (lower keys win).

The order is lexicographic:
  1. spread: the spread domain holding the fewest replicas of the service,
  2. the node holding the fewest replicas of the service,
  3. least allocated: max(cpu fraction, memory fraction) on the node after placing,
  4. a random tie-break, drawn from the caller's rng: one `rng.random()` per node, in the
     order the nodes were given, at the start of each request,
  5. the node's position in the input (only matters if two draws are equal).
Spread by `node.name` orders exactly like 2, so it needs no domain level.
"""

from __future__ import annotations

import random

from .model import load_fraction

# (replicas of the service on the node, load after placing, tie-break, node position)
NodeKey = tuple[int, float, float, int]
# (replicas of the service in the domain, *NodeKey of the domain's best node, domain position)
DomainKey = tuple[int, int, float, float, int, int]


def least_allocated(
    cpu_allocated: float, cpu_capacity: float, mem_allocated: int, mem_capacity: int, cpu: float, memory: int
) -> float:
    """The node's load if one more replica were placed on it (lower is better)."""
    return load_fraction(cpu_allocated + cpu, cpu_capacity, mem_allocated + memory, mem_capacity)


def draw_tiebreaks(rng: random.Random, n: int) -> list[float]:
    """One random tie-break per node, in input order; the only use of randomness."""
    rand = rng.random
    return [rand() for _ in range(n)]


def node_key(on_node: int, load_after: float, tiebreak: float, position: int) -> NodeKey:
    return (on_node, load_after, tiebreak, position)


def domain_key(in_domain: int, best: NodeKey, domain: int) -> DomainKey:
    return (in_domain, best[0], best[1], best[2], best[3], domain)


def victim_node_key(on_node: int, load: float, name: str) -> tuple[int, float, str]:
    """For removal (a min-heap key): most replicas first, then most allocated, then by name."""
    return (-on_node, -load, name)
