"""The assignment record on the wire: a spec once per service revision (10,000 replicas fit NATS' 1 MB),
lossless round trips, the older form still read, bounded terms; every record decoder on random input raises
nothing but WireError."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drover.shared import models, wire
from drover.shared.errors import WireError
from drover.shared.models import MAX_COUNTER, AssignedContainer, Assignment, Record

NATS_MAX_PAYLOAD = 1024 * 1024


def _spec(image: str = "local/busybox:latest") -> dict[str, Any]:
    """A spec of about 850 bytes (as big as a realistic one: command, env, ports, health, update, placement)."""
    return {"image": image, "env": {"PAD": "x" * 800}, "ports": [{"name": "http", "container": 8080}]}


def _rid(rng: random.Random) -> str:
    return f"{rng.getrandbits(40):010x}"


def _key(a: Assignment) -> list[tuple[str, str, int, int, Any]]:
    return sorted((c.id, c.service, c.revision, c.restarts, c.spec) for c in a.containers)


def test_ten_thousand_replicas_on_one_node_fit_a_nats_message_and_round_trip() -> None:
    rng = random.Random(1)
    name = "s" * 63  # the longest service name: it is not repeated per replica
    v1, v2 = _spec(), _spec("local/busybox:2")
    containers = [
        AssignedContainer(id=_rid(rng), service=name, revision=1 + i % 2, spec=v1 if i % 2 == 0 else v2, restarts=i % 7)
        for i in range(10_000)
    ]
    a = Assignment(node="n1", generation=7, term=3, containers=containers)
    data = a.to_wire()
    assert len(data) < NATS_MAX_PAYLOAD
    old_form = wire.encode(a.model_dump(mode="json"))
    assert len(old_form) > 5 * NATS_MAX_PAYLOAD  # what it was: a spec per container
    b = Assignment.from_wire(data)
    assert (b.node, b.generation, b.term) == ("n1", 7, 3)
    assert _key(b) == _key(a)
    assert [c.id for c in b.containers] == [c.id for c in a.containers]  # one service: order kept
    # One spec object per revision in memory too.
    assert len({id(c.spec) for c in b.containers}) == 2


def test_several_services_and_a_spec_that_differs_within_a_revision() -> None:
    odd = {**_spec(), "env": {"ODD": "1"}}
    containers = [
        AssignedContainer(id="a1", service="web", revision=1, spec=_spec()),
        AssignedContainer(id="b1", service="db", revision=4, spec=_spec("local/db")),
        AssignedContainer(id="a2", service="web", revision=1, spec=odd),
        AssignedContainer(id="a3", service="web", revision=2, spec=_spec("local/busybox:2")),
    ]
    a = Assignment(node="n1", generation=1, term=1, containers=containers)
    b = Assignment.from_wire(a.to_wire())
    assert _key(b) == _key(a)
    assert [c.id for c in b.containers] == ["a1", "a2", "a3", "b1"]  # grouped by service, order kept within


def test_a_finished_replica_keeps_its_mark_and_others_carry_none() -> None:
    done = AssignedContainer(id="j1", service="job", revision=1, spec=_spec(), finished=True)
    other = AssignedContainer(id="j2", service="job", revision=1, spec=_spec())
    data = Assignment(node="n1", containers=[done, other]).to_wire()
    assert [c.finished for c in Assignment.from_wire(data).containers] == [True, False]
    assert data.count(b"finished") == 1  # written only where true: unchanged bytes for everything else


def test_the_older_form_is_still_read() -> None:
    a = Assignment(
        node="n1", generation=2, term=5, containers=[AssignedContainer(id="x", service="w", revision=1, spec=_spec())]
    )
    b = Assignment.from_wire(wire.encode(a.model_dump(mode="json")))
    assert _key(b) == _key(a) and b.term == 5


def test_a_replica_without_a_spec_and_out_of_range_terms_are_wire_errors() -> None:
    body = {"node": "n1", "services": {"web": {"specs": {}, "replicas": [{"id": "a", "revision": 1}]}}}
    with pytest.raises(WireError, match="no spec for revision 1"):
        Assignment.from_wire(wire.encode(body))
    for term in (MAX_COUNTER + 1, 2**63, 2**64 - 1, -1):
        with pytest.raises(WireError):
            Assignment.from_wire(wire.encode({"node": "n1", "term": term, "services": {}}))
        with pytest.raises(WireError):
            Assignment.from_wire(wire.encode({"node": "n1", "generation": term, "containers": []}))
    assert Assignment.from_wire(wire.encode({"node": "n1", "term": MAX_COUNTER})).term == MAX_COUNTER


RECORDS = [
    cls for cls in vars(models).values() if isinstance(cls, type) and issubclass(cls, Record) and cls is not Record
]

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_keys = st.sampled_from(
    [
        "node",
        "term",
        "generation",
        "containers",
        "services",
        "specs",
        "replicas",
        "id",
        "revision",
        "spec",
        "name",
        "service",
        "time",
        "kind",
        "state",
        "restarts",
        "labels",
        "capacity",
        "history",
        "ok",
        "data",
    ]
)
_bodies = st.dictionaries(_keys, _values | st.dictionaries(st.text(max_size=8), _values, max_size=3), max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_every_decoder_on_random_bytes_raises_only_wire_error(data: bytes) -> None:
    for cls in RECORDS:
        try:
            cls.from_wire(data)
        except WireError:
            pass


@settings(max_examples=300, deadline=None)
@given(_bodies)
def test_every_decoder_on_random_maps_raises_only_wire_error(body: dict[str, Any]) -> None:
    data = msgpack.packb({"v": 1, **body}, use_bin_type=True)
    for cls in RECORDS:
        try:
            cls.from_wire(data)
        except WireError:
            pass


@settings(max_examples=200, deadline=None)
@given(_bodies)
def test_assignment_sections_on_random_maps_raise_only_wire_error(body: dict[str, Any]) -> None:
    sections = {"web": {"specs": body, "replicas": [body, {"id": "a", "revision": 1}]}}
    data = msgpack.packb({"v": 1, "node": "n", "services": sections}, use_bin_type=True)
    try:
        Assignment.from_wire(data)
    except WireError:
        pass


def test_an_out_of_range_term_fails_only_where_it_is_stored() -> None:
    a = Assignment(node="n1", term=2**63, containers=[])  # building one never raises (a controller's loop)
    with pytest.raises(WireError, match="term"):
        a.to_wire()
