"""A node's assignment is one NATS message: placement counts its bytes like a resource, so four services
with near-1 MiB specs never make an assignment the server refuses (that write was retried every pass)."""

from __future__ import annotations

import random

from drover.controller.reconcile import plan
from drover.controller.scheduler import NodeView, PlacementRequest, place
from drover.shared import assignsize
from drover.shared.limits import MAX_ASSIGNMENT_BYTES, MAX_SPEC_BYTES, NATS_MAX_PAYLOAD
from drover.shared.models import AssignedContainer, Assignment, ServiceRecord, spec_of
from tests.unit.controller.test_reconcile import NOW, node, snap

# A spec near the largest a 1 MiB manifest file may say (2 MiB once encoded: a file's JSON form is longer), so
# three fit in one 8 MiB message and a fourth does not.
BIG = {"image": "x", "resources": {"cpu": 0.01, "memory": 1 << 20},
       "env": {f"K{i}": "x" * 4180 for i in range(MAX_SPEC_BYTES // 4194)}}


def big_service(name: str, replicas: int = 1) -> ServiceRecord:
    return ServiceRecord(name=name, spec=spec_of(BIG), replicas=replicas, updated=NOW)


def test_four_big_services_on_one_node_place_three_and_say_why_the_fourth_waits() -> None:
    assert MAX_ASSIGNMENT_BYTES // 4 < assignsize.spec_bytes(spec_of(BIG)) < MAX_ASSIGNMENT_BYTES // 3
    services = [big_service(f"s{i}") for i in range(4)]
    p = plan(snap([node("a", cpu=8.0)], services, {}), random.Random(1))
    placed = p.assignments["a"]
    assert len(placed) == 3
    assert len(Assignment(node="a", containers=placed).to_wire()) <= NATS_MAX_PAYLOAD
    [waiting] = [s for s in p.unplaced]
    assert p.unplaced[waiting] == "1 replica(s) cannot be placed (assignment over max_payload: 1)"


def test_a_second_node_takes_what_one_node_assignment_cannot() -> None:
    services = [big_service(f"s{i}") for i in range(4)]
    p = plan(snap([node("a", cpu=8.0), node("b", cpu=8.0)], services, {}), random.Random(1))
    assert sorted(len(c) for c in p.assignments.values()) == [2, 2] and not p.unplaced
    for name, containers in p.assignments.items():
        assert len(Assignment(node=name, containers=containers).to_wire()) <= NATS_MAX_PAYLOAD


def test_existing_assignments_count_and_one_revision_spec_is_paid_once_per_node() -> None:
    spec = spec_of(BIG)
    held = [AssignedContainer(id=f"r{i}", service=f"s{i}", revision=1, spec=spec) for i in range(3)]
    # Many replicas of a revision the node already holds fit (each is a short reference); a new one does not.
    services = [big_service("s0", 50), big_service("s1"), big_service("s2")]
    more = plan(snap([node("a", cpu=8.0)], services, {"a": held}), random.Random(1))
    assert sum(c.service == "s0" for c in more.assignments["a"]) == 50 and not more.unplaced
    fourth = plan(snap([node("a", cpu=8.0)], [*(big_service(f"s{i}") for i in range(4))], {"a": held}),
                  random.Random(1))
    assert "a" not in fourth.assignments and "assignment over max_payload" in fourth.unplaced["s3"]


def test_the_scheduler_counts_a_revision_spec_once_per_node_and_the_reason() -> None:
    nodes = [NodeView(name="a", labels={}, cpu_capacity=8, mem_capacity=1 << 30, cpu_allocated=0,
                      mem_allocated=0, schedulable=True, assign_bytes=100, assign_capacity=1000)]
    req = PlacementRequest(service="web", count=9, cpu=0, memory=0, revision=2, revision_bytes=500,
                           replica_bytes=50)
    got = place(nodes, req, rng=random.Random(1))
    assert (len(got.placements), got.unplaced) == (8, 1)  # 100 + 500 + 8 * 50 = 1000
    assert got.reasons == {"assignment over max_payload": 1}
    held = [NodeView(**{**nodes[0].__dict__, "revisions": frozenset({("web", 2)})})]
    assert len(place(held, req, rng=random.Random(1)).placements) == 9  # the spec is there already


def test_the_estimate_is_never_below_the_stored_size() -> None:
    small = spec_of({"image": "x"})
    for replicas in ([("web", 1, small, "0123456789")] * 3,
                     [("web", 1, small, f"r{i}-01234567") for i in range(500)] + [("big", 2, spec_of(BIG), "a")]):
        containers = [AssignedContainer(id=rid, service=s, revision=r, spec=sp, restarts=10**6, finished=True)
                      for s, r, sp, rid in replicas]
        stored = Assignment(node="node-1", generation=2**53 - 1, term=2**53 - 1, containers=containers).to_wire()
        assert len(stored) <= assignsize.assignment_bytes("node-1", replicas)


def test_a_replica_with_its_own_spec_pays_for_its_copy() -> None:
    spec = spec_of(BIG)
    never = spec_of({**spec.stored, "restart": "never"})  # what a failed job replica is told
    replicas = [("job", 1, spec, "r1-00000001"), ("job", 1, never, "r1-00000002"), ("job", 1, never, "r1-00000003")]
    containers = [AssignedContainer(id=rid, service=s, revision=r, spec=sp) for s, r, sp, rid in replicas]
    stored = Assignment(node="a", containers=containers).to_wire()
    assert len(stored) > 2 * assignsize.spec_bytes(spec)  # each differing replica carries its spec
    assert len(stored) <= assignsize.assignment_bytes("a", replicas)
