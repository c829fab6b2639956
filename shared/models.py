"""Typed records that cross the bus or live in the KV store.

Each record is a pydantic model so a malformed bus message fails validation with a field path instead of
crashing a loop. ``to_wire``/``from_wire`` convert to and from the msgpack wire format of ``wire.py``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from enum import StrEnum
from typing import Annotated, Any, NewType, Self, cast

import msgpack
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic import ValidationError as PydanticValidationError

from drover.shared import wire
from drover.shared.errors import WireError
from drover.shared.manifest import ServiceSpec
from drover.shared.subjects import event_binding

ReplicaId = NewType("ReplicaId", str)
NodeName = NewType("NodeName", str)
ServiceName = NewType("ServiceName", str)


class NodeStatus(StrEnum):
    READY = "ready"
    LOST = "lost"
    CORDONED = "cordoned"
    DRAINING = "draining"


class ContainerState(StrEnum):
    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    EXITED = "exited"
    CRASH_LOOP = "crash-loop"
    LOST = "lost"


class ServiceStatus(StrEnum):
    PROGRESSING = "progressing"
    AVAILABLE = "available"
    DEGRADED = "degraded"
    ROLLING_BACK = "rolling-back"
    ROLLED_BACK = "rolled-back"
    FAILED = "failed"


class Record(BaseModel):
    """Base of wire records: unknown keys are ignored (newer peers may add some), types are checked."""

    model_config = ConfigDict(extra="ignore", frozen=False)

    def to_wire(self) -> bytes:
        return wire.encode(self.model_dump(mode="json"))

    @classmethod
    def from_wire(cls, data: bytes) -> Self:
        return cls.from_dict(wire.decode(data))

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> Self:
        try:
            return cls.model_validate(body)
        except PydanticValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise WireError(f"{cls.__name__}: {loc}: {first['msg']}") from exc


class Resources(Record):
    cpu: float = 0.0  # cores
    memory: int = 0  # bytes


class NodeRegistration(Record):
    """What an agent says about itself; written by the agent to the nodes bucket."""

    name: str
    address: str = "127.0.0.1"
    labels: dict[str, str] = Field(default_factory=dict)
    capacity: Resources = Field(default_factory=Resources)
    driver: str = "docker"
    boot_id: str = ""  # new on every agent start
    started_at: float = 0.0
    version: str = ""
    gossip_port: int = 0  # UDP port of the agent's gossip endpoint on ``address`` (0 = none yet)
    # The agent's gossip ed25519 public key (64 hex digits; "" = none yet). Only the node's own credentials may
    # write its registration, so this is the trusted directory peers verify its gossip signatures against.
    gossip_pubkey: str = ""


class NodeControl(Record):
    """Operator intent for a node; written by the controller."""

    cordoned: bool = False
    draining: bool = False


# -- specs: typed in memory, their JSON form on the wire ----------------------------------------------------

SPEC_CACHE_SIZE = 1024  # distinct specs kept validated: far more than the revisions a cluster refers to at once
# ... and at most about this much of them (their encoded size: a spec may be 128 KiB, so the count alone could
# let a few big specs hold hundreds of MiB on every agent and controller)
SPEC_CACHE_BYTES = 32 * 1024 * 1024
_specs: OrderedDict[bytes, ServiceSpec] = OrderedDict()
_specs_bytes = 0
_specs_lock = threading.Lock()  # records are also decoded in worker threads


def _remember(key: bytes, spec: ServiceSpec) -> None:
    """Cache ``spec`` under ``key``, dropping the least recently used beyond the bounds (lock held)."""
    global _specs_bytes
    if key not in _specs:
        _specs_bytes += len(key)
    _specs[key] = spec
    _specs.move_to_end(key)
    while len(_specs) > SPEC_CACHE_SIZE or (_specs_bytes > SPEC_CACHE_BYTES and len(_specs) > 1):
        old, _ = _specs.popitem(last=False)
        _specs_bytes -= len(old)


def _cached_spec(value: Any, handler: ValidatorFunctionWrapHandler) -> ServiceSpec:
    """Validate a spec's JSON form once per distinct spec: every node's assignment, every record and every
    revision entry that carries the same spec shares one frozen ``ServiceSpec`` (and the cost of one
    validation)."""
    if isinstance(value, ServiceSpec):
        return value
    try:
        key = _key(value)
    except (TypeError, ValueError, OverflowError):
        return cast(ServiceSpec, handler(value))  # not JSON-like: the validator says what is wrong
    with _specs_lock:
        hit = _specs.get(key)
        if hit is not None:
            _specs.move_to_end(key)
            return hit
    spec = cast(ServiceSpec, handler(value))
    # Also under its canonical form, so the same spec written differently (defaults left out) is one object.
    canonical = _key(spec.stored)
    with _specs_lock:
        spec = _specs.get(canonical, spec)
        _remember(canonical, spec)
        _remember(key, spec)
    return spec


def _key(body: Any) -> bytes:
    """The cache key of a spec's JSON form: its exact msgpack bytes (ten times cheaper than canonical JSON). Key
    order counts (a spec written in another order is validated once more), types count (1, 1.0 and True are
    different keys), and anything but plain dicts, lists and scalars (a tuple) is no key: it is validated."""
    out: bytes = msgpack.packb(body, use_bin_type=True, strict_types=True)
    return out


#: A ``ServiceSpec`` in a record: validated (and cached) from its JSON form, stored as ``ServiceSpec.stored``
#: (the form the controller has always written, so records and assignments of earlier versions still decode
#: and hash the same).
StoredSpec = Annotated[
    ServiceSpec, WrapValidator(_cached_spec), PlainSerializer(lambda s: s.stored, return_type=dict[str, Any])
]


def spec_of(value: ServiceSpec | dict[str, Any]) -> ServiceSpec:
    """A spec as records keep it (its revision view: ``replicas`` is the record's, not the spec's), shared with
    every other copy of the same spec. Raises pydantic's ValidationError for an invalid JSON form."""
    body = value.stored if isinstance(value, ServiceSpec) else value
    return _stored_spec.validate_python(body)


MAX_COUNTER = 2**53 - 1  # terms and generations: far from any overflow (msgpack's 2^64, a JSON number's 2^53)
Counter = Annotated[int, Field(ge=0, le=MAX_COUNTER)]


class AssignedContainer(Record):
    """One replica the controller wants on a node (in memory: with the spec of its service revision)."""

    id: str  # replica id: the drover.id label and the container name suffix
    service: str
    revision: int
    spec: StoredSpec  # shared by the replicas of one revision
    restarts: int = 0  # restarts of this replica before it was (re)placed here
    # A job replica of a run that is over: kept for its logs, never created again if its container is gone.
    finished: bool = False
    # Agent-local, never on the wire: Docker binds of the files the agent wrote for this replica.
    file_binds: tuple[str, ...] = Field(default=(), exclude=True)


class ReplicaRef(Record):
    """A replica in an assignment on the wire; its spec is its service section's spec of its revision."""

    id: str
    revision: int
    restarts: int = 0
    finished: bool = False  # (written only when true)
    spec: StoredSpec | None = None  # only when it differs from the revision's spec in the section


class ServiceSection(Record):
    specs: dict[str, StoredSpec] = Field(default_factory=dict)  # str(revision) -> spec
    replicas: list[ReplicaRef] = Field(default_factory=list)


class AssignmentWire(Record):
    """The stored form of an ``Assignment``: one section per service, holding each revision's spec once and
    its replicas by reference, so 10,000 replicas on one node stay far below NATS' 1 MB payload (a
    service's name is not repeated per replica either)."""

    node: str
    generation: Counter = 0
    term: Counter = 0
    services: dict[str, ServiceSection] = Field(default_factory=dict)


class Assignment(Record):
    """The full desired set of containers for one node; the key is the node name.

    In memory every container carries its spec (one ``ServiceSpec`` shared by the replicas of a revision,
    validated once per distinct spec however many replicas and nodes refer to it); on the wire
    the spec travels once per service revision (``AssignmentWire``; containers come back grouped by service,
    in their order within a service). The older form, a spec inside every container, is still read.
    """

    node: str
    # Plain ints in memory (building one never raises); the bound is checked where it is stored or read.
    generation: int = 0
    term: int = 0
    containers: list[AssignedContainer] = Field(default_factory=list)

    def to_wire(self) -> bytes:
        for field, value in (("term", self.term), ("generation", self.generation)):
            if not 0 <= value <= MAX_COUNTER:
                raise WireError(f"Assignment: {field}: {value} is outside 0..{MAX_COUNTER}")
        services: dict[str, dict[str, Any]] = {}
        known: dict[tuple[str, int], ServiceSpec] = {}
        for c in self.containers:
            section = services.setdefault(c.service, {"specs": {}, "replicas": []})
            first = known.setdefault((c.service, c.revision), c.spec)
            if first is c.spec:
                section["specs"].setdefault(str(c.revision), c.spec.stored)
            ref: dict[str, Any] = {"id": c.id, "revision": c.revision, "restarts": c.restarts}
            if c.finished:
                ref["finished"] = True
            if first is not c.spec and first.stored != c.spec.stored:
                ref["spec"] = c.spec.stored  # never lose a difference, however unexpected
            section["replicas"].append(ref)
        body = {"node": self.node, "generation": self.generation, "term": self.term}
        return wire.encode({**body, "services": services})

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> Self:
        if "services" not in body:
            old = super().from_dict(body)
            if not (0 <= old.term <= MAX_COUNTER and 0 <= old.generation <= MAX_COUNTER):
                raise WireError(f"Assignment: term or generation outside 0..{MAX_COUNTER}")
            return old
        w = AssignmentWire.from_dict(body)
        containers: list[AssignedContainer] = []
        for name, section in w.services.items():
            for i, r in enumerate(section.replicas):
                spec = r.spec if r.spec is not None else section.specs.get(str(r.revision))
                if spec is None:
                    raise WireError(f"Assignment: services.{name}.replicas.{i}: no spec for revision {r.revision}")
                # Validated as part of ``w`` already: constructed without copying the shared spec.
                containers.append(
                    AssignedContainer.model_construct(
                        id=r.id, service=name, revision=r.revision, spec=spec, restarts=r.restarts,
                        finished=r.finished, file_binds=(),
                    )
                )
        built = cls.model_construct(node=w.node, generation=w.generation, term=w.term, containers=containers)
        return cast(Self, built)


class ContainerStatus(Record):
    """What an agent observes of one of its containers."""

    id: str  # replica id
    container_id: str = ""
    name: str = ""
    service: str = ""
    revision: int = 0
    state: ContainerState = ContainerState.PENDING
    ready: bool = False
    restarts: int = 0
    host_port: int | None = None
    ports: dict[str, int] = Field(default_factory=dict)
    started_at: float | None = None
    exit_code: int | None = None
    message: str = ""
    # Usage of the requests (autoscaled services only; None = not measured): 100 = the whole cpu / memory request.
    cpu_percent: float | None = None
    memory_percent: float | None = None


class Heartbeat(Record):
    """Sent by every agent each second and whenever its containers change."""

    node: str
    boot_id: str = ""
    seq: int = 0
    time: float = 0.0
    generation: int = 0  # the assignment generation the agent has converged to (or is converging to)
    containers: list[ContainerStatus] = Field(default_factory=list)
    # New connections per second through this node's proxy, by service (all proxied services).
    service_rps: dict[str, float] = Field(default_factory=dict)


class Event(Record):
    time: float
    kind: str
    service: str = ""
    node: str = ""
    container: str = ""
    message: str = ""


def decode_event(subject: str, data: bytes) -> Event:
    """An event as read from the events stream: its body must name the node its subject is bound to
    (``subjects.event_binding``: an agent speaks only of its own node), else ``WireError``."""
    ev = Event.from_wire(data)
    bound = event_binding(subject)
    if bound is not None and ev.node != bound:
        whose = "a fleet's node outside its prefix" if bound == "\x00" else f"node {bound!r}"
        raise WireError(f"event {ev.kind!r} names node {ev.node!r} on the subject of {whose}: dropped")
    return ev


class RevisionEntry(Record):
    revision: int
    spec: StoredSpec
    time: float
    change: str = ""
    result: str = ""


class ServiceRecord(Record):
    """Desired state of a service in the services bucket."""

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    spec: StoredSpec  # ``spec.replicas`` means nothing here: the desired count is ``replicas``
    revision: int = 1
    replicas: int = 1
    autoscale_enabled: bool = True
    created: float = 0.0
    updated: float = 0.0
    history: list[RevisionEntry] = Field(default_factory=list)
    deleted: bool = False
    # The rollout towards ``revision``: progressing | complete | failed | rolled-back.
    rollout_state: str = "progressing"
    rollout_reason: str = ""
    rollout_started: float = 0.0
    rollout_progress: int = 0  # available replicas of ``revision`` when progress was last seen
    rollout_progress_at: float = 0.0
    last_good: int = 0  # newest revision whose rollout completed (0 = none yet)
    paused: bool = False
    # mode: job — the current run (replica ids r<run>-…), the last schedule tick handled, recent runs
    # ({run, revision, started, finished, result}).
    job_run: int = 0
    job_last_tick: float = 0.0
    job_runs: list[dict[str, Any]] = Field(default_factory=list)
    last_request: str = ""  # id of the last request that changed the desired revision (retries are not redone)

    def revision_spec(self, revision: int) -> ServiceSpec | None:
        for h in self.history:
            if h.revision == revision:
                return h.spec
        return None

    def max_revision(self) -> int:
        return max([self.revision, *(h.revision for h in self.history)])


class ApiReply(Record):
    """Reply to every controller API request."""

    ok: bool
    data: Any = None
    error: str = ""
    code: str = ""  # "invalid" | "not-found" | "failed" | "unavailable"
    problems: list[dict[str, Any]] = Field(default_factory=list)


_stored_spec: TypeAdapter[ServiceSpec] = TypeAdapter(StoredSpec)
