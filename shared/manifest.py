"""Service manifests: the pydantic models of ``kind: Service`` and the load/validate entry points.

``parse_manifests`` validates every document of every source and raises one ``ManifestError`` listing all
problems (``FILE[doc N] spec.ports[0].container: must be an integer 1-65535``), so nothing is applied when
anything is wrong. In the models durations are float seconds, memory int bytes and cpu float cores; the
user may write ``2s``, ``64Mi`` or ``250m``. ``ServiceSpec.model_validate(manifest.spec_dict())``
round-trips, which is how agents rebuild a spec received over the bus.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from functools import cached_property
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from drover.shared import convert, units
from drover.shared.constraints import Constraint, parse_constraint, parse_spread
from drover.shared.limits import MAX_IMAGE_LENGTH, MAX_ITEMS, MAX_REPLICAS, MAX_SPEC_BYTES
from drover.shared.manifest_errors import (
    ManifestError,
    display_name,
    in_file_order,
    problems_from_pydantic,
)
from drover.shared.workloads import (
    FileSpec,
    JobSpec,
    PullPolicy,
    Schedule,
    VolumeSpec,
    cross_check,
    workload_problems,
)

__all__ = [
    "AutoscalePolicy",
    "Constraint",
    "ExecProbe",
    "HealthSpec",
    "HttpProbe",
    "ManifestError",
    "Metadata",
    "PlacementSpec",
    "PortSpec",
    "ResourceSpec",
    "ServiceManifest",
    "ServiceSpec",
    "TcpProbe",
    "UpdatePolicy",
    "check_data",
    "load_documents",
    "parse_constraint",
    "parse_manifests",
    "parse_request",
    "revision_view",
    "spec_hash",
]

DEFAULT_MEMORY = 64 * 1024 * 1024
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL_KEY = re.compile(r"([A-Za-z0-9.-]+/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_PERCENT = re.compile(r"(\d{1,3})%")


# -- field types ---------------------------------------------------------------------------------------


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError("must be an integer 1-65535")
    return value


def _string_list(value: Any) -> Any:
    if not isinstance(value, list):
        raise ValueError("must be a list of strings")
    return value


def _scalar_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if not isinstance(value, str):
        raise ValueError("must be a string, number or boolean")
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(
            "must be a valid environment variable name: letters, digits and _, not starting with a digit"
        )
    return value


def _label_key(value: str) -> str:
    if len(value) > 253 or not _LABEL_KEY.fullmatch(value):
        raise ValueError("must be a valid label key ([prefix/]name of letters, digits, -, _ and .)")
    return value


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        raise ValueError(
            "must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter "
            "or digit, at most 63 characters"
        )
    return value


def _port_name(value: str) -> str:
    if len(value) > 15 or not _DNS_LABEL.fullmatch(value):
        raise ValueError("must be lowercase letters, digits and '-', at most 15 characters")
    return value


def _rollout_amount(value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_REPLICAS:
        return value
    if isinstance(value, str):
        match = _PERCENT.fullmatch(value.strip())
        if match and int(match.group(1)) <= 100:
            return f"{int(match.group(1))}%"
    raise ValueError(f"must be an integer 0-{MAX_REPLICAS} or a percentage like 25%")


def _constraint(value: str) -> str:
    parse_constraint(value)
    return value


Duration = Annotated[float, BeforeValidator(units.parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(units.parse_duration), Field(gt=0)]
Memory = Annotated[int, BeforeValidator(units.parse_memory)]
Cpu = Annotated[float, BeforeValidator(units.parse_cpu)]
Port = Annotated[int, BeforeValidator(_port)]
StringList = Annotated[list[str], BeforeValidator(_string_list)]
Text = Annotated[str, BeforeValidator(_scalar_text)]
RolloutAmount = Annotated[int | str, BeforeValidator(_rollout_amount)]


_cross_check = cross_check  # one helper for every model's cross-field problems (shared.workloads)


# -- models --------------------------------------------------------------------------------------------


class _Model(BaseModel):
    # no NaN or infinity anywhere: a number that is not finite is never a sensible setting. Frozen: one
    # validated spec is shared by every record, revision and replica that refers to it (``models.StoredSpec``).
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class PortSpec(_Model):
    name: Annotated[str, AfterValidator(_port_name)] | None = None
    container: Port
    expose: Port | None = None
    protocol: Literal["tcp"] = "tcp"


class ResourceSpec(_Model):
    cpu: Cpu = 0.1
    memory: Memory = DEFAULT_MEMORY


class HttpProbe(_Model):
    path: str = "/"
    port: Port

    @model_validator(mode="after")
    def _path(self) -> Self:
        if not self.path.startswith("/"):
            _cross_check([(("path",), "must start with /")])
        return self


class TcpProbe(_Model):
    port: Port


class ExecProbe(_Model):
    command: Annotated[StringList, Field(min_length=1)]


class HealthSpec(_Model):
    http: HttpProbe | None = None
    tcp: TcpProbe | None = None
    exec: ExecProbe | None = None
    interval: PositiveDuration = 2.0
    timeout: PositiveDuration = 1.0
    failure_threshold: int = Field(default=3, ge=1, le=MAX_REPLICAS)
    initial_delay: Duration = 0.0

    @model_validator(mode="after")
    def _one_probe(self) -> Self:
        count = sum(p is not None for p in (self.http, self.tcp, self.exec))
        if count != 1:
            _cross_check([((), "exactly one of http, tcp, exec is required")])
        return self

    def probe_port(self) -> int | None:
        """The container port the probe targets (None for exec)."""
        return self.http.port if self.http else self.tcp.port if self.tcp else None


class UpdatePolicy(_Model):
    max_surge: RolloutAmount = 1
    max_unavailable: RolloutAmount = 0
    min_ready: Duration = 5.0
    progress_deadline: PositiveDuration = 120.0
    auto_rollback: bool = True

    @model_validator(mode="after")
    def _can_progress(self) -> Self:
        if self.max_surge in (0, "0%") and self.max_unavailable in (0, "0%"):
            _cross_check([(("max_surge",), "max_surge and max_unavailable cannot both be 0")])
        return self


class AutoscalePolicy(_Model):
    min: int = Field(default=1, ge=0, le=MAX_REPLICAS)
    max: int = Field(default=10, ge=1, le=MAX_REPLICAS)
    cpu_percent: float | None = Field(default=None, ge=0.001, le=1_000_000)
    memory_percent: float | None = Field(default=None, ge=0.001, le=1_000_000)
    rps_per_replica: float | None = Field(default=None, ge=0.001, le=1_000_000)
    scale_up_window: Duration = 0.0
    scale_down_window: Duration = 60.0

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.min > self.max:
            _cross_check([(("min",), f"must be <= max ({self.max})")])
        return self


class PlacementSpec(_Model):
    constraints: list[Annotated[str, AfterValidator(_constraint)]] = Field(default_factory=list)
    spread: Annotated[str, AfterValidator(parse_spread)] | None = None

    def parsed_constraints(self) -> list[Constraint]:
        return [parse_constraint(c) for c in self.constraints]


class ServiceSpec(_Model):
    image: Annotated[str, Field(min_length=1, max_length=MAX_IMAGE_LENGTH)]
    command: StringList | None = None
    env: dict[Annotated[str, AfterValidator(_env_name)], Text] = Field(default_factory=dict)
    replicas: int = Field(default=1, ge=0, le=MAX_REPLICAS)
    network: Literal["bridge", "host"] = "bridge"
    ports: Annotated[list[PortSpec], Field(max_length=MAX_ITEMS)] = Field(default_factory=list)
    resources: ResourceSpec = Field(default_factory=ResourceSpec)
    health: HealthSpec | None = None
    restart: Literal["always", "on-failure", "never"] = "always"
    stop_grace: Duration = 10.0
    update: UpdatePolicy = Field(default_factory=UpdatePolicy)
    autoscale: AutoscalePolicy | None = None
    placement: PlacementSpec = Field(default_factory=PlacementSpec)
    mode: Literal["service", "global", "job"] = "service"
    job: JobSpec | None = None
    schedule: Schedule | None = None
    volumes: Annotated[list[VolumeSpec], Field(max_length=MAX_ITEMS)] = Field(default_factory=list)
    files: Annotated[list[FileSpec], Field(max_length=MAX_ITEMS)] = Field(default_factory=list)
    pull: PullPolicy = "if-missing"

    @cached_property
    def stored(self) -> dict[str, Any]:
        """The JSON form records and assignments keep: ``revision_view`` of the spec (no ``replicas``: a
        record's count is its own field). Computed once per (frozen) spec and shared: never change it."""
        return revision_view(self.model_dump(mode="json"))

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy (not validated: prefer ``models.spec_of`` on a changed JSON form) without the cached
        ``stored`` form of the original."""
        copied = super().model_copy(update=update, deep=deep)
        copied.__dict__.pop("stored", None)
        return copied

    @model_validator(mode="before")
    @classmethod
    def _job_defaults(cls, data: Any) -> Any:
        # Why: defaults spelt out or left out must store (and diff) the same; set before validation because
        # the model is frozen (an explicit ``restart: always`` is refused in ``_consistent``).
        if isinstance(data, dict) and data.get("mode") == "job":
            data = dict(data)
            if data.get("job") is None:
                data["job"] = {}
            data.setdefault("restart", "on-failure")
        return data

    @model_validator(mode="after")
    def _small_enough_to_store(self) -> Self:
        size = len(json.dumps(self.model_dump(mode="json"), separators=(",", ":")).encode())
        if size > MAX_SPEC_BYTES:
            _cross_check([((), f"is {size // 1024} KiB once encoded, more than {MAX_SPEC_BYTES // 1024} KiB "
                                "(large files belong in a volume)")])
        return self

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = workload_problems(
            mode=self.mode, job=self.job, schedule=self.schedule, autoscale=self.autoscale,
            volumes=self.volumes, files=self.files,
        )
        if self.mode == "job" and self.restart == "always":
            problems.append((("restart",), "must be on-failure or never for mode: job"))
        if not self.image.strip() or any(c.isspace() for c in self.image):
            problems.append((("image",), "must be an image reference without spaces"))
        seen: dict[str, dict[Any, int]] = {"name": {}, "container": {}, "expose": {}}
        for i, port in enumerate(self.ports):
            for attr, firsts in seen.items():
                value = getattr(port, attr)
                if value is None:
                    continue
                if value in firsts:
                    problems.append((("ports", i, attr), f"duplicates spec.ports[{firsts[value]}].{attr}"))
                else:
                    firsts[value] = i
        if self.health is not None and self.network == "bridge":
            probe = "http" if self.health.http else "tcp"
            target = self.health.probe_port()
            if target is not None and target not in seen["container"]:
                problems.append(
                    (("health", probe, "port"), f"port {target} is not among spec.ports[].container")
                )
        _cross_check(problems)
        return self


class Metadata(_Model):
    name: Annotated[str, AfterValidator(_dns_label)]
    labels: dict[Annotated[str, AfterValidator(_label_key)], Text] = Field(default_factory=dict)


class ServiceManifest(_Model):
    apiVersion: Literal["drover/v1"]
    kind: Literal["Service"]
    metadata: Metadata
    spec: ServiceSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    def spec_dict(self) -> dict[str, Any]:
        """The spec in its canonical JSON form (what the controller stores and agents receive)."""
        return self.spec.model_dump(mode="json")


# -- revisions -----------------------------------------------------------------------------------------


def revision_view(spec: ServiceSpec | Mapping[str, Any]) -> dict[str, Any]:
    """The part of a spec (its JSON form) that defines a revision: everything but ``replicas``."""
    if isinstance(spec, ServiceSpec):
        return dict(spec.stored)
    return {k: v for k, v in spec.items() if k != "replicas"}


def spec_hash(spec: ServiceSpec | Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON of ``revision_view(spec)``: equal iff the same revision.

    A valid spec dict is first normalised through ``ServiceSpec`` so that defaults written out or left out,
    ``2s`` or ``2.0``, hash the same (a typed spec hashes as its JSON form: the same hash as the dict it
    was read from). ``replicas`` never affects the hash.
    """
    body: Mapping[str, Any] = spec.stored if isinstance(spec, ServiceSpec) else spec
    if not isinstance(spec, ServiceSpec):
        try:
            body = ServiceSpec.model_validate(dict(spec)).model_dump(mode="json")
        except PydanticValidationError:
            pass
    text = json.dumps(revision_view(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


# -- loading -------------------------------------------------------------------------------------------


def _document_problems(doc: Any) -> tuple[ServiceManifest | None, list[tuple[str, str]]]:
    if not isinstance(doc, dict):
        return None, [
            ("", f"must be a mapping with apiVersion, kind, metadata and spec, not a {type(doc).__name__}")
        ]
    head = []
    if doc.get("apiVersion") != "drover/v1":
        head.append(("", "apiVersion must be drover/v1 (or apps/v1 for a Kubernetes Deployment)"))
    if doc.get("kind") != "Service":
        head.append(("", "kind must be Service"))
    if head:
        return None, head
    try:
        return ServiceManifest.model_validate(doc), []
    except PydanticValidationError as exc:
        return None, problems_from_pydantic(exc, ServiceManifest)


class _Collector:
    """Validates documents one by one, keeping every problem in input order and names unique."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []
        self.manifests: list[ServiceManifest] = []
        self.first_seen: dict[str, str] = {}

    def add(self, where: str, doc: Any) -> None:
        manifest, found = _document_problems(doc)
        self.problems.extend((f"{where} {path}" if path else where, message) for path, message in found)
        if manifest is None:
            return
        if manifest.name in self.first_seen:
            self.problems.append(
                (
                    f"{where} metadata.name",
                    f"duplicate service name '{manifest.name}' (also in {self.first_seen[manifest.name]})",
                )
            )
            return
        self.first_seen[manifest.name] = where
        self.manifests.append(manifest)

    def result(self, names: list[str]) -> list[ServiceManifest]:
        """The manifests; any problem raises them all, in the order of the files ``names``."""
        if self.problems:
            raise ManifestError(in_file_order(self.problems, names))
        return self.manifests


def parse_manifests(sources: list[tuple[str, str]]) -> list[ServiceManifest]:
    """Validate every document of every ``(name, text)`` source; all valid → the manifests in order.

    Any problem anywhere raises one ``ManifestError`` with all of them (``FILE[doc N] path: message``);
    service names must be unique across all documents.
    """
    collector = _Collector()
    loaded: list[convert.Loaded] = []
    for source, text in sources:
        try:
            loaded.append((display_name(source), load_documents(text, source)))
        except ManifestError as exc:
            collector.problems.extend(exc.problems)
    # Kubernetes and Compose documents become native ones here (a v1 Service may sit in another file
    # than its Deployment, hence all files at once); their unsupported fields are problems like any other.
    native, foreign_problems = convert.to_native(loaded)
    collector.problems.extend(foreign_problems)
    for where, doc in native:
        collector.add(where, doc)
    return collector.result([display_name(source) for source, _ in sources])


def load_documents(text: str, source: str) -> list[tuple[int, Any]]:
    """``manifest_load.load_documents``, imported when text is parsed: PyYAML is a tenth of a second of every
    daemon's start otherwise (agents and controllers never parse manifest text)."""
    from drover.shared.manifest_load import load_documents as load

    return load(text, source)


def check_data(data: Any) -> str | None:
    """``manifest_load.check_data`` (see ``load_documents`` for why it is imported here)."""
    from drover.shared.manifest_load import check_data as check

    return check(data)


def parse_request(docs: list[Any], source: str = "request") -> list[ServiceManifest]:
    """Validate the decoded documents of an apply request (the controller cannot assume they came through
    the CLI): the nesting and size bounds of YAML first, then the same checks as ``parse_manifests``."""
    name = display_name(source)
    collector = _Collector()
    for number, doc in enumerate(docs, start=1):
        why = check_data(doc)
        if why:
            collector.problems.append((f"{name}[doc {number}]", f"too complex: {why}"))
        else:
            collector.add(f"{name}[doc {number}]", doc)
    return collector.result([name])
