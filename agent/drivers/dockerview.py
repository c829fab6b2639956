"""What the engine's inspect of a container says, read as drover's ``Observed``: drover's labels on
containers, Docker's timestamps, the published ports. Pure: no engine call here (``docker.py`` makes them)."""

from __future__ import annotations

import contextlib
import re
from datetime import datetime
from typing import Any

from drover.agent.drivers.base import CREATED, EXITED, RUNNING, Observed

L_CLUSTER = "drover.cluster"
L_SERVICE = "drover.service"
L_NODE = "drover.node"
L_REVISION = "drover.revision"
L_ID = "drover.id"

_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$")


def parse_time(value: Any) -> float | None:
    """Docker's RFC 3339 nano timestamps -> unix time; None for the zero time or garbage."""
    if not isinstance(value, str) or value.startswith("0001-"):
        return None
    m = _TS.match(value)
    if not m:
        return None
    frac = (m.group(2) or ".0")[:7]
    tz = m.group(3) or "Z"
    tz = "+00:00" if tz == "Z" else tz
    try:
        return datetime.fromisoformat(f"{m.group(1)}{frac}{tz}").timestamp()
    except ValueError:
        return None


def labels_ok(labels: dict[str, str], cluster: str, node: str) -> bool:
    """A container of this cluster and node, made by drover (it carries a replica id)."""
    return labels.get(L_CLUSTER) == cluster and labels.get(L_NODE) == node and bool(labels.get(L_ID))


def _revision(labels: dict[str, str]) -> int:
    try:
        return int(labels.get(L_REVISION, "0"))
    except ValueError:
        return 0


def _port_map(info: dict[str, Any]) -> dict[int, int]:
    out: dict[int, int] = {}
    ports = ((info.get("NetworkSettings") or {}).get("Ports")) or {}
    for key, bindings in ports.items():
        if not bindings or not key.endswith("/tcp"):
            continue
        try:
            cport = int(key.split("/")[0])
            out[cport] = int(bindings[0]["HostPort"])
        except (ValueError, KeyError, IndexError, TypeError):
            continue
    return out


def observed_from_inspect(info: dict[str, Any]) -> Observed:
    cfg = info.get("Config") or {}
    labels: dict[str, str] = cfg.get("Labels") or {}
    state = info.get("State") or {}
    status = state.get("Status", "")
    st = RUNNING if state.get("Running") else CREATED if status == "created" else EXITED
    host = (info.get("HostConfig") or {}).get("NetworkMode") == "host"
    port_map = _port_map(info)
    if host:
        for key in cfg.get("ExposedPorts") or {}:
            with contextlib.suppress(ValueError):
                p = int(key.split("/")[0])
                port_map[p] = p
    return Observed(
        id=labels.get(L_ID, ""),
        container_id=info.get("Id", ""),
        name=str(info.get("Name", "")).lstrip("/"),
        service=labels.get(L_SERVICE, ""),
        revision=_revision(labels),
        state=st,
        exit_code=None if st != EXITED else int(state.get("ExitCode", 0)),
        started_at=parse_time(state.get("StartedAt")),
        finished_at=parse_time(state.get("FinishedAt")) if st == EXITED else None,
        oom=bool(state.get("OOMKilled")),
        port_map=port_map,
        host_network=host,
    )


__all__ = ["L_CLUSTER", "L_ID", "L_NODE", "L_REVISION", "L_SERVICE", "labels_ok", "observed_from_inspect",
           "parse_time"]
