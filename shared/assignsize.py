"""How many bytes a node's assignment takes on the wire, estimated from above without encoding it.

An assignment travels as one KV value, so it must stay within the NATS server's ``max_payload``: placement
counts these bytes like a resource (``controller.scheduler``). The stored form (``models.Assignment.to_wire``)
holds each service revision's spec once and every replica as a short reference, so the cost of a replica is
its reference, plus its revision's spec when it is the first replica of that revision on the node.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

from drover.shared import wire
from drover.shared.manifest import ServiceSpec

#: the envelope besides the node's name (generation, term, the wire version, the map's keys)
ENVELOPE_BYTES = 1024
#: a service revision's section around its spec (service name and revision keys; the name is added)
REVISION_OVERHEAD = 64
#: a replica's reference besides its id ({"id", "revision", "restarts", "finished"} in msgpack: about 40)
REPLICA_OVERHEAD = 64
#: the longest replica id placement plans for (``0123456789`` or a job's ``r<run>-01234567``)
MAX_REPLICA_ID = 32

_SIZES_KEPT = 1024  # distinct specs: the revisions a cluster refers to at once (specs are shared objects)
_sizes: OrderedDict[int, tuple[ServiceSpec, int]] = OrderedDict()
_lock = threading.Lock()


#: what a KV message needs besides its value (subject, headers): an assignment stays this far below max_payload
PAYLOAD_HEADROOM = 64 * 1024


def assignment_limit(max_payload: int) -> int:
    """How many bytes a node's assignment may take on a NATS server that takes ``max_payload`` in a message."""
    return max(0, max_payload - PAYLOAD_HEADROOM)


def spec_bytes(spec: ServiceSpec) -> int:
    """The encoded size of ``spec`` (cached per spec object: the replicas of a revision share one)."""
    key = id(spec)
    with _lock:
        hit = _sizes.get(key)
        if hit is not None and hit[0] is spec:
            _sizes.move_to_end(key)
            return hit[1]
    size = len(wire.encode(spec.stored))
    with _lock:
        _sizes[key] = (spec, size)  # the spec is held so that its id is not reused while cached
        _sizes.move_to_end(key)
        while len(_sizes) > _SIZES_KEPT:
            _sizes.popitem(last=False)
    return size


def revision_bytes(service: str, spec: ServiceSpec) -> int:
    """What the first replica of a service revision adds to a node's assignment beyond its reference."""
    return spec_bytes(spec) + len(service.encode()) + REVISION_OVERHEAD


def replica_bytes(replica_id: str) -> int:
    return len(replica_id.encode()) + REPLICA_OVERHEAD


def envelope_bytes(node: str) -> int:
    """An assignment's bytes besides its services (node name, generation, term, wire version)."""
    return ENVELOPE_BYTES + len(node.encode())


def services_bytes(
    replicas: Iterable[tuple[str, int, ServiceSpec, str]],
) -> tuple[int, frozenset[tuple[str, int]]]:
    """The bytes of an assignment's services holding ``(service, revision, spec, id)``s (an upper estimate),
    and the service revisions among them. A replica whose spec differs from its revision's first (a failed job
    replica told ``restart: never``) carries its own copy on the wire, so it pays for it."""
    total = 0
    first: dict[tuple[str, int], ServiceSpec] = {}
    for service, revision, spec, rid in replicas:
        known = first.get((service, revision))
        if known is None:
            first[(service, revision)] = spec
            total += revision_bytes(service, spec)
        elif known is not spec and known.stored != spec.stored:  # (equal copies: the wire sends one)
            total += spec_bytes(spec)
        total += replica_bytes(rid)
    return total, frozenset(first)


def assignment_bytes(node: str, replicas: Iterable[tuple[str, int, ServiceSpec, str]]) -> int:
    """An upper estimate of the stored assignment of ``node`` holding ``(service, revision, spec, id)``s."""
    return envelope_bytes(node) + services_bytes(replicas)[0]
