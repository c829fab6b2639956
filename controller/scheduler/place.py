"""Placement: run the filters, order the feasible nodes by score, place one replica at a time.

Cost. Nodes are grouped into feasibility classes (same labels and schedulable state), so
label constraints and the spread domain are evaluated once per class. The feasible nodes of
each spread domain sit in a min-heap keyed by their score (`scores.NodeKey`), and the domains
sit in a top-level heap keyed by (replicas in the domain, best node's key). Placing a replica
pops the best domain and its best node, updates that one node and pushes both back, so a
placement costs O(log nodes) rather than a scan of every node. Because only the placed
node's and its domain's keys change, no heap entry ever goes stale.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Sequence

from drover.shared.constraints import Constraint, ConstraintError, parse_constraints

from .filters import (
    ASSIGNMENT_FULL,
    AVOIDED,
    INSUFFICIENT_CPU,
    INSUFFICIENT_MEMORY,
    UNSCHEDULABLE,
    check_assignment,
    check_resources,
    first_failing_constraint,
)
from .model import (
    SPREAD_NODE_NAME,
    NodeView,
    Placement,
    PlacementRequest,
    Plan,
    spread_domain,
    validate_spread,
)
from .scores import (
    DomainKey,
    NodeKey,
    domain_key,
    draw_tiebreaks,
    least_allocated,
    node_key,
    victim_node_key,
)


class _Cluster:
    """Allocations of one snapshot, updated as requests are planned (never the NodeViews)."""

    def __init__(self, nodes: Sequence[NodeView]) -> None:
        self.nodes = list(nodes)
        self.names = [n.name for n in self.nodes]
        if len(set(self.names)) != len(self.names):
            raise ValueError("nodes: duplicate node names")
        self.cpu_cap = [n.cpu_capacity for n in self.nodes]
        self.mem_cap = [n.mem_capacity for n in self.nodes]
        self.cpu_alloc = [n.cpu_allocated for n in self.nodes]
        self.mem_alloc = [n.mem_allocated for n in self.nodes]
        self.assign_alloc = [n.assign_bytes for n in self.nodes]
        self.assign_cap = [n.assign_capacity for n in self.nodes]
        self._placed: dict[tuple[str, int], set[int]] = {}  # (service, revision) -> nodes it was placed on here
        self._counts: dict[str, list[int]] = {}
        groups: dict[tuple[bool, tuple[tuple[str, str], ...]], list[int]] = {}
        for i, n in enumerate(self.nodes):
            groups.setdefault((n.schedulable, tuple(sorted(n.labels.items()))), []).append(i)
        # (a representative node, the positions of every node in the class)
        self.classes = [(self.nodes[idxs[0]], idxs) for idxs in groups.values()]

    def counts(self, service: str) -> list[int]:
        """Replicas of `service` per node, including those this cluster has placed."""
        got = self._counts.get(service)
        if got is None:
            got = [n.service_counts.get(service, 0) for n in self.nodes]
            self._counts[service] = got
        return got

    def lacking(self, i: int, request: PlacementRequest, held: set[int]) -> str | None:
        """Why node ``i`` cannot take one more replica of ``request`` by what it holds, else None. ``held``:
        the nodes this plan placed the request's revision on (its spec is paid once per node)."""
        lacking = check_resources(
            self.cpu_alloc[i], self.cpu_cap[i], self.mem_alloc[i], self.mem_cap[i], request.cpu, request.memory
        )
        if lacking is None and (request.replica_bytes or request.revision_bytes):  # (no estimate: no check)
            lacking = check_assignment(self.assign_alloc[i], self.assign_cap[i], self.assign_cost(i, request, held))
        return lacking

    def assign_cost(self, i: int, request: PlacementRequest, held: set[int]) -> int:
        """Bytes one more replica of ``request`` adds to node ``i``'s assignment."""
        there = i in held or (request.service, request.revision) in self.nodes[i].revisions
        return request.replica_bytes + (0 if there else request.revision_bytes)

    def placed_on(self, request: PlacementRequest) -> set[int]:
        return self._placed.setdefault((request.service, request.revision), set())

    def plan(self, request: PlacementRequest, rng: random.Random) -> Plan:
        try:
            constraints = parse_constraints(request.constraints)
        except ConstraintError as exc:
            # Validation uses the same grammar, so only a record written around it gets here; it must
            # not stop the other services' placement: nothing is placed and every node says why.
            return Plan(placements=(), unplaced=request.count, reasons={f"invalid constraint: {exc}": len(self.nodes)})
        tiebreak = draw_tiebreaks(rng, len(self.nodes))
        reasons: dict[str, int] = {}
        heaps, in_domain = self._feasible(request, constraints, tiebreak, reasons)
        placements = self._fill(request, heaps, in_domain, tiebreak, reasons)
        return Plan(
            placements=tuple(placements),
            unplaced=request.count - len(placements),
            reasons=dict(sorted(reasons.items())),
        )

    def _feasible(
        self,
        request: PlacementRequest,
        constraints: tuple[Constraint, ...],
        tiebreak: list[float],
        reasons: dict[str, int],
    ) -> tuple[list[list[NodeKey]], list[int]]:
        """Filter every node; return a heap of feasible nodes and a replica count per domain."""
        label_cs = [(p, c) for p, c in enumerate(constraints) if not c.on_name]
        name_cs = [(p, c) for p, c in enumerate(constraints) if c.on_name]
        by_domain = request.spread is not None and request.spread != SPREAD_NODE_NAME
        counts = self.counts(request.service)
        held = self.placed_on(request)
        avoid = request.avoid_nodes
        cpu, mem = request.cpu, request.memory
        cpu_alloc, mem_alloc, cpu_cap, mem_cap = self.cpu_alloc, self.mem_alloc, self.cpu_cap, self.mem_cap
        domain_ids: dict[str, int] = {}
        heaps: list[list[NodeKey]] = []
        in_domain: list[int] = []

        def bump(reason: str, n: int = 1) -> None:
            reasons[reason] = reasons.get(reason, 0) + n

        # The per-node checks below are ``lacking`` and ``least_allocated`` written out (same order, same
        # arithmetic): this loop runs for every node for every service placed, 5,000 nodes at the largest size.
        names, nodes = self.names, self.nodes
        assign_alloc, assign_cap = self.assign_alloc, self.assign_cap
        sized = bool(request.replica_bytes or request.revision_bytes)
        replica_bytes, revision_bytes, placed = request.replica_bytes, request.revision_bytes, held
        revision = (request.service, request.revision)
        inf = math.inf
        for rep, idxs in self.classes:
            dom = spread_domain(request.spread, rep.name, rep.labels) if by_domain else ""
            d = domain_ids.get(dom)
            if d is None:
                d = domain_ids[dom] = len(heaps)
                heaps.append([])
                in_domain.append(0)
            in_domain[d] += sum(counts[i] for i in idxs)
            if not rep.schedulable:
                bump(UNSCHEDULABLE, len(idxs))
                continue
            class_fail = first_failing_constraint(rep, label_cs)  # same labels: once per class
            heap = heaps[d]
            for i in idxs:
                if avoid and names[i] in avoid:
                    bump(AVOIDED)
                    continue
                fail = class_fail
                if name_cs:
                    hit = first_failing_constraint(nodes[i], name_cs)
                    if hit is not None and (fail is None or hit[0] < fail[0]):
                        fail = hit
                if fail is not None:
                    bump(fail[1])
                    continue
                cpu_after, cap = cpu_alloc[i] + cpu, cpu_cap[i]
                if cpu > 0 and cpu_after > cap:
                    bump(INSUFFICIENT_CPU)
                    continue
                mem_after, mcap = mem_alloc[i] + mem, mem_cap[i]
                if mem > 0 and mem_after > mcap:
                    bump(INSUFFICIENT_MEMORY)
                    continue
                if sized:
                    cost = replica_bytes + (0 if i in placed or revision in nodes[i].revisions else revision_bytes)
                    if cost > 0 and assign_alloc[i] + cost > assign_cap[i]:
                        bump(ASSIGNMENT_FULL)
                        continue
                cpu_frac = cpu_after / cap if cap > 0 else (0.0 if cpu_after <= 0 else inf)
                mem_frac = mem_after / mcap if mcap > 0 else (0.0 if mem_after <= 0 else inf)
                heap.append((counts[i], cpu_frac if cpu_frac >= mem_frac else mem_frac, tiebreak[i], i))
        return heaps, in_domain

    def _fill(
        self,
        request: PlacementRequest,
        heaps: list[list[NodeKey]],
        in_domain: list[int],
        tiebreak: list[float],
        reasons: dict[str, int],
    ) -> list[Placement]:
        """Place up to `count` replicas, best domain then best node first."""
        heappush, heappop = heapq.heappush, heapq.heappop
        top: list[DomainKey] = []
        for d, heap in enumerate(heaps):
            if heap:
                heapq.heapify(heap)
                top.append(domain_key(in_domain[d], heap[0], d))
        heapq.heapify(top)
        counts = self.counts(request.service)
        held = self.placed_on(request)
        sized = bool(request.replica_bytes or request.revision_bytes)
        cpu, mem = request.cpu, request.memory
        cpu_alloc, mem_alloc, cpu_cap, mem_cap = self.cpu_alloc, self.mem_alloc, self.cpu_cap, self.mem_cap
        names = self.names
        placements: list[Placement] = []
        for index in range(request.count):
            if not top:
                break
            d = heappop(top)[5]
            heap = heaps[d]
            i = heappop(heap)[3]
            cpu_alloc[i] += cpu
            mem_alloc[i] += mem
            if sized:
                self.assign_alloc[i] += self.assign_cost(i, request, held)
                held.add(i)
            counts[i] += 1
            in_domain[d] += 1
            placements.append(Placement(names[i], index))
            lacking = self.lacking(i, request, held)
            if lacking is None:
                load = least_allocated(cpu_alloc[i], cpu_cap[i], mem_alloc[i], mem_cap[i], cpu, mem)
                heappush(heap, node_key(counts[i], load, tiebreak[i], i))
            else:
                reasons[lacking] = reasons.get(lacking, 0) + 1
            if heap:
                heappush(top, domain_key(in_domain[d], heap[0], d))
        return placements


def place(nodes: Sequence[NodeView], request: PlacementRequest, *, rng: random.Random) -> Plan:
    """Place `request.count` replicas on `nodes`; as many as fit, never over-committing a node.

    Pure: reads only its arguments (the rng only for the final tie-break). A malformed constraint
    places nothing (reason ``invalid constraint: ...``); duplicate node names raise ValueError.
    """
    return _Cluster(nodes).plan(request, rng)


class Placer:
    """Places request after request on one snapshot of the nodes, each seeing the placements before it (what
    ``place_many`` does, one request at a time): the nodes are taken in once, not once per request."""

    def __init__(self, nodes: Sequence[NodeView]) -> None:
        self._cluster = _Cluster(nodes)

    def place(self, request: PlacementRequest, *, rng: random.Random) -> Plan:
        return self._cluster.plan(request, rng)


def place_many(nodes: Sequence[NodeView], requests: Sequence[PlacementRequest], *, rng: random.Random) -> list[Plan]:
    """Plan each request in turn, each seeing the allocations of the plans before it."""
    cluster = _Cluster(nodes)
    return [cluster.plan(r, rng) for r in requests]


def choose_victims(
    nodes: Sequence[NodeView],
    service: str,
    candidates: Sequence[tuple[str, str]],
    count: int,
    spread: str | None,
) -> list[str]:
    """Pick `count` replica ids among `candidates` ((replica_id, node) pairs) to remove.

    Greedy, so what remains stays as spread as it can: each pick comes from the spread
    domain holding the most replicas of `service`, within it from the node holding the
    most, ties to the most allocated node, then by node name; on a node the greatest
    replica id goes first. Replica counts are the larger of the node's
    `service_counts[service]` and its candidates, so replicas that are not candidates
    (e.g. already on the new revision) still count toward the spread. A node missing
    from `nodes` counts as lacking every label and as fully allocated (its replicas go
    first on a tie). Pure and deterministic.
    """
    validate_spread(spread)
    if count <= 0 or not candidates:
        return []
    views = {n.name: n for n in nodes}
    removable: dict[str, list[str]] = {}
    for rid, node_name in candidates:
        removable.setdefault(node_name, []).append(rid)
    for rids in removable.values():
        rids.sort()
    on_node: dict[str, int] = {n.name: n.service_counts.get(service, 0) for n in nodes}
    for node_name, rids in removable.items():
        on_node[node_name] = max(on_node.get(node_name, 0), len(rids))

    def domain_of(node_name: str) -> str:
        view = views.get(node_name)
        return spread_domain(spread, node_name, view.labels if view is not None else {})

    def load_of(node_name: str) -> float:
        view = views.get(node_name)
        return view.load() if view is not None else math.inf

    in_domain: dict[str, int] = {}
    for node_name, n in on_node.items():
        dom = domain_of(node_name)
        in_domain[dom] = in_domain.get(dom, 0) + n
    heaps: dict[str, list[tuple[int, float, str]]] = {}
    for node_name in removable:
        heaps.setdefault(domain_of(node_name), []).append(
            victim_node_key(on_node[node_name], load_of(node_name), node_name)
        )
    top: list[tuple[int, int, float, str, str]] = []
    for dom, heap in heaps.items():
        heapq.heapify(heap)
        top.append((-in_domain[dom], *heap[0], dom))
    heapq.heapify(top)

    victims: list[str] = []
    while len(victims) < count and top:
        dom = heapq.heappop(top)[4]
        heap = heaps[dom]
        _, neg_load, node_name = heapq.heappop(heap)
        rids = removable[node_name]
        victims.append(rids.pop())
        on_node[node_name] -= 1
        in_domain[dom] -= 1
        if rids:
            heapq.heappush(heap, victim_node_key(on_node[node_name], -neg_load, node_name))
        if heap:
            heapq.heappush(top, (-in_domain[dom], *heap[0], dom))
    return victims
