"""Workload spec fields: volumes, files, job settings, schedules and pull policy (``spec.volumes`` & co.).

The models validate what is local to a field (absolute paths without ``..``, one of ``host``/``volume``,
one of ``content``/``secret``, a cron expression of exactly five fields or ``@every D``); ``ServiceSpec``
checks how they combine with ``mode``. Mounts that would hand a container the host (``/`` or the Docker
socket) are not a property of one manifest but of the cluster's policy: ``privileged_mounts`` lists them
and the controller refuses them unless it was started with ``--allow-privileged-mounts``.

``next_tick`` is the pure schedule arithmetic the controller uses: given a schedule and the last tick, the
next tick (UTC).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from drover.shared import units
from drover.shared.limits import MAX_ITEMS  # volumes or files per service
from drover.shared.manifest_errors import CROSS_CHECK_ERROR

if TYPE_CHECKING:  # manifest imports this module (its field models)
    from drover.shared.manifest import ServiceSpec

__all__ = [
    "MAX_ITEMS",
    "FileSpec",
    "JobSpec",
    "VolumeSpec",
    "file_mode",
    "next_tick",
    "parse_schedule",
    "privileged_mounts",
    "secret_name",
    "secrets_used",
]

DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock", "/var/run", "/run")
_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9_.]{0,251}[a-z0-9])?")
_EVERY = re.compile(r"@every\s+(\S+)")


def cross_check(problems: list[tuple[tuple[int | str, ...], str]]) -> None:
    """Raise the bundled cross-field problems of a model (``manifest_errors`` turns them into lines)."""
    if problems:
        summary = "; ".join(f"{'.'.join(map(str, p))}: {m}" for p, m in problems)
        raise PydanticCustomError(CROSS_CHECK_ERROR, "{summary}", {"summary": summary, "problems": problems})


def _abs_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must be an absolute path (starting with /)")
    if ".." in value.split("/"):
        raise ValueError("must not contain '..'")
    if "\x00" in value or len(value) > 4096:
        raise ValueError("must be a path without NUL bytes, at most 4096 characters")
    return value


def _container_path(value: str) -> str:
    _abs_path(value)
    if posixpath.normpath(value) == "/":
        raise ValueError("must not be / (a mount over the container's root)")
    return value


def secret_name(value: str) -> str:
    """Validate a secret's name (lowercase letters, digits, '-', '_', '.'; ≤253); ValueError if bad."""
    if not _SECRET_NAME.fullmatch(value):
        raise ValueError(
            "must be a secret name: lowercase letters, digits, '-', '_' and '.', starting and ending with "
            "a letter or digit, at most 253 characters"
        )
    return value


def _volume_name(value: str) -> str:
    if not _VOLUME_NAME.fullmatch(value):
        raise ValueError("must be a volume name: letters, digits, '_', '.' and '-', starting with a letter or digit")
    return value


def file_mode(value: Any) -> str:
    """``"0644"``, ``"644"`` or an int (YAML's ``0644`` is 420) → the canonical ``"0644"``."""
    if isinstance(value, bool):
        raise ValueError("must be an octal file mode like \"0644\"")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"0?[0-7]{3}", value.strip()):
        number = int(value.strip(), 8)
    else:
        raise ValueError("must be an octal file mode like \"0644\"")
    if not 0 <= number <= 0o777:
        raise ValueError("must be an octal file mode between 0000 and 0777")
    return f"{number:04o}"


def parse_schedule(text: str) -> tuple[str, float]:
    """``("cron", 0)`` for a 5-field cron expression, ``("every", seconds)`` for ``@every D``; ValueError."""
    from croniter import croniter

    stripped = text.strip()
    every = _EVERY.fullmatch(stripped)
    if every:
        seconds = units.parse_duration(every.group(1))
        if seconds < 1:
            raise ValueError("@every needs a duration of at least 1s")
        return "every", seconds
    if len(stripped.split()) != 5 or not croniter.is_valid(stripped):
        raise ValueError("must be a 5-field cron expression (minute hour day month weekday, UTC) or '@every 30s'")
    return "cron", 0.0


def next_tick(schedule: str, after: float) -> float:
    """The first tick of ``schedule`` strictly after unix time ``after`` (cron in UTC; ``@every D`` counts
    from ``after``, the previous tick or the start)."""
    from croniter import croniter

    kind, seconds = parse_schedule(schedule)
    if kind == "every":
        return after + seconds
    start = datetime.fromtimestamp(after, tz=UTC)
    return float(croniter(schedule.strip(), start).get_next(float))


def _schedule(value: str) -> str:
    parse_schedule(value)
    return " ".join(value.split())


class _Model(BaseModel):
    # frozen like every part of a ServiceSpec (one validated spec is shared, never changed in place)
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class VolumeSpec(_Model):
    host: Annotated[str, AfterValidator(_abs_path)] | None = None
    volume: Annotated[str, AfterValidator(_volume_name)] | None = None
    container: Annotated[str, AfterValidator(_container_path)]
    readonly: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.host is None) == (self.volume is None):
            cross_check([((), "exactly one of host, volume is required")])
        return self


class FileSpec(_Model):
    path: Annotated[str, AfterValidator(_container_path)]
    content: str | None = None
    secret: Annotated[str, AfterValidator(secret_name)] | None = None
    mode: Annotated[str, BeforeValidator(file_mode)] = ""

    @model_validator(mode="before")
    @classmethod
    def _default_mode(cls, data: Any) -> Any:
        # Why: secrets are readable by the container's user only; plain config files by everyone. Set before
        # validation (the model is frozen).
        if isinstance(data, dict) and data.get("mode", "") == "":
            data = {**data, "mode": "0400" if data.get("secret") is not None else "0644"}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.content is None) == (self.secret is None):
            cross_check([((), "exactly one of content, secret is required")])
        return self


class JobSpec(_Model):
    completions: int = Field(default=1, ge=1, le=10_000)
    parallelism: int = Field(default=1, ge=1, le=10_000)
    backoff_limit: int = Field(default=3, ge=0, le=10_000)


Schedule = Annotated[str, AfterValidator(_schedule)]
PullPolicy = Literal["if-missing", "always", "never"]


def workload_problems(
    *,
    mode: str,
    job: JobSpec | None,
    schedule: str | None,
    autoscale: object,
    volumes: Sequence[VolumeSpec],
    files: Sequence[FileSpec],
) -> list[tuple[tuple[int | str, ...], str]]:
    """Cross-field problems of the workload fields of a spec."""
    problems: list[tuple[tuple[int | str, ...], str]] = []
    if mode != "job":
        if job is not None:
            problems.append((("job",), "only allowed with mode: job"))
        if schedule is not None:
            problems.append((("schedule",), "only allowed with mode: job"))
    if mode != "service" and autoscale is not None:
        problems.append((("autoscale",), f"not allowed with mode: {mode}"))
    for kind, items, attr in (("volumes", volumes, "container"), ("files", files, "path")):
        firsts: dict[str, int] = {}
        for i, item in enumerate(items):
            target = posixpath.normpath(getattr(item, attr))
            if target in firsts:
                problems.append(((kind, i, attr), f"duplicates spec.{kind}[{firsts[target]}].{attr}"))
            firsts.setdefault(target, i)
    mounted = {posixpath.normpath(v.container) for v in volumes}
    for i, f in enumerate(files):
        if posixpath.normpath(f.path) in mounted:
            problems.append((("files", i, "path"), "is also the container path of a volume"))
    return problems


def privileged_mounts(spec: ServiceSpec) -> list[tuple[str, str]]:
    """``(path, message)`` for each host mount of a spec that would give a container the host: the root
    directory or the Docker socket (or the directory holding it)."""
    out: list[tuple[str, str]] = []
    for i, v in enumerate(spec.volumes):
        if v.host is None:
            continue
        norm = posixpath.normpath(v.host)
        if norm == "/":
            out.append((f"spec.volumes[{i}].host", "mounting the host's / is not allowed on this cluster"))
        elif norm in DOCKER_SOCKETS:
            out.append((f"spec.volumes[{i}].host", "mounting the Docker socket is not allowed on this cluster"))
    return out


def secrets_used(spec: ServiceSpec) -> list[str]:
    """The names of the secrets a spec's files refer to, sorted, each once."""
    return sorted({f.secret for f in spec.files if f.secret is not None})


def sticky(spec: ServiceSpec) -> bool:
    """Whether a spec's replicas keep their node (they have data there: a host path or a named volume)."""
    return bool(spec.volumes)
