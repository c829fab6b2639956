"""Docker Compose files (``services:``) → one drover Service per Compose service, of the same name.

Honoured: image, command, environment (list or map), volumes (an absolute host path or a named volume),
pull_policy, ports (``"H:C"`` → container C exposed on the proxy
port H; ``"C"`` → container port only; or the long form ``{target, published}``), ``deploy.replicas``,
``deploy.update_config``, ``deploy.resources``, ``deploy.restart_policy.condition``, ``restart``,
``healthcheck``, ``stop_grace_period``, ``network_mode: host``. ``version:``, ``name:`` and ``x-`` keys are
ignored. Every other field is a problem naming it.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from drover.shared import units
from drover.shared.convert.fields import Fields, Problem

_HINT = " (drover honours image, command, environment, ports, deploy, healthcheck, restart)"
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*([bkmg]?)b?", re.IGNORECASE)
_PORT = re.compile(r"(?:(\d+)(?::))?(\d+)(?:/(tcp|udp))?")
_RESTART = {"always": "always", "unless-stopped": "always", "on-failure": "on-failure", "no": "never"}
_PULL = {"always": "always", "missing": "if-missing", "if_not_present": "if-missing", "never": "never"}
_CONDITION = {"any": "always", "on-failure": "on-failure", "none": "never"}


def is_compose(doc: Any) -> bool:
    return isinstance(doc, dict) and "services" in doc and "apiVersion" not in doc and "kind" not in doc


def _memory(f: Fields, key: str) -> int | None:
    # Docker's units are binary whatever the case: 512m, 1g, 100k, 1gb.
    value = f.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _MEMORY.fullmatch(str(value).strip())
    if not match:
        f.problems.append((f.at(key), "must be a size like 512m or 1g"))
        return None
    power = " kmg".index(match.group(2).lower() or " ")
    return int(float(match.group(1)) * 1024**power)


def _duration(f: Fields, key: str) -> str | float | None:
    value = f.get(key)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        f.problems.append((f.at(key), "must be a duration like 10s or 1m30s"))
        return None
    return value.strip()


def _command(f: Fields, key: str) -> list[str] | None:
    value = f.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            f.problems.append((f.at(key), f"cannot be split into words: {exc}"))
            return None
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return [str(v) for v in value]
    f.problems.append((f.at(key), "must be a string or a list of strings"))
    return None


def _environment(f: Fields) -> dict[str, Any]:
    value = f.get("environment")
    env: dict[str, Any] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            if v is None:
                f.problems.append((f.at("environment") + f".{k}", "needs a value (drover does not read the shell's)"))
            else:
                env[str(k)] = v
    elif isinstance(value, list):
        for i, item in enumerate(value):
            name, eq, text = str(item).partition("=")
            if not eq:
                where = f"{f.at('environment')}[{i}]"
                f.problems.append((where, "must be NAME=VALUE (drover does not read the shell's)"))
            else:
                env[name] = text
    elif value is not None:
        f.problems.append((f.at("environment"), "must be a list of NAME=VALUE or a mapping"))
    return env


def _ports(f: Fields) -> list[dict[str, Any]]:
    ports: list[dict[str, Any]] = []
    for path, item in f.items("ports"):
        host: int | None
        if isinstance(item, dict):
            p = Fields(item, path, f.problems)
            container, host = p.get("target"), p.get("published")
            if isinstance(host, str) and host.isdigit():
                host = int(host)
            if p.get("protocol", "tcp") != "tcp":
                f.problems.append((p.at("protocol"), "only tcp is supported"))
            p.get("mode")
            p.refuse("host_ip", "the proxy listens on the node's address")
            p.done()
        else:
            match = _PORT.fullmatch(str(item).strip())
            if not match:
                f.problems.append((path, 'must be "HOST:CONTAINER" or "CONTAINER" (no ranges or IP addresses)'))
                continue
            if match.group(3) == "udp":
                f.problems.append((path, "only tcp is supported"))
            host = int(match.group(1)) if match.group(1) else None
            container = int(match.group(2))
        port: dict[str, Any] = {"container": container}
        if host is not None:
            port["expose"] = host
        ports.append(port)
    return ports


def _volumes(f: Fields) -> list[dict[str, Any]]:
    # A bind of an absolute path is a host path on the node; a name is the node engine's named volume.
    out: list[dict[str, Any]] = []
    for path, item in f.items("volumes"):
        if isinstance(item, dict):
            v = Fields(item, path, f.problems)
            kind, source, target = v.get("type", "volume"), v.text("source"), v.text("target")
            readonly = v.get("read_only", False) is True
            if kind not in ("bind", "volume"):
                f.problems.append((v.at("type"), "must be bind or volume"))
            v.done(" (only type, source, target, read_only)")
        else:
            parts = str(item).split(":")
            mode = parts.pop() if len(parts) == 3 else "rw"
            if len(parts) != 2 or mode not in ("ro", "rw"):
                f.problems.append((path, 'must be "SOURCE:TARGET[:ro]" (anonymous volumes are not supported)'))
                continue
            source, target, readonly = parts[0], parts[1], mode == "ro"
            kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
        if not source or not target:
            f.problems.append((path, "needs a source and a target"))
            continue
        if kind == "bind" and not source.startswith("/"):
            f.problems.append((path, "a bind mount needs an absolute host path: drover runs it on another node"))
            continue
        volume: dict[str, Any] = {"host" if kind == "bind" else "volume": source, "container": target}
        if readonly:
            volume["readonly"] = True
        out.append(volume)
    return out


def _healthcheck(f: Fields) -> dict[str, Any] | None:
    if f.get("disable") is True:
        f.done()
        return None
    test = f.get("test")
    command: list[str] | None = None
    if isinstance(test, str):
        command = ["/bin/sh", "-c", test]
    elif isinstance(test, list) and test and all(isinstance(t, str) for t in test):
        if test[0] == "NONE":
            f.done()
            return None
        if test[0] == "CMD" and len(test) > 1:
            command = test[1:]
        elif test[0] == "CMD-SHELL" and len(test) == 2:
            command = ["/bin/sh", "-c", test[1]]
    if command is None:
        f.problems.append((f.at("test"), 'must be ["CMD", ...], ["CMD-SHELL", "..."] or a string'))
        return None
    out: dict[str, Any] = {"exec": {"command": command}}
    for key, target in (("interval", "interval"), ("timeout", "timeout"), ("start_period", "initial_delay")):
        value = _duration(f, key)
        if value is not None:
            out[target] = value
    retries = f.number("retries", minimum=1)
    if retries is not None:
        out["failure_threshold"] = retries
    f.refuse("start_interval", "not supported by drover")
    f.done()
    return out


def _update(f: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {}
    step = f.number("parallelism", minimum=1) or 1
    if f.get("order", "stop-first") == "start-first":
        out.update(max_surge=step, max_unavailable=0)
    else:
        out.update(max_surge=0, max_unavailable=step)
    if f.data.get("order") not in (None, "start-first", "stop-first"):
        f.problems.append((f.at("order"), "must be start-first or stop-first"))
    monitor = _duration(f, "monitor")
    if monitor is not None:
        out["min_ready"] = monitor
    action = f.get("failure_action", "pause")
    if action not in ("rollback", "pause", "continue"):
        f.problems.append((f.at("failure_action"), "must be rollback, pause or continue"))
    out["auto_rollback"] = action == "rollback"
    f.refuse("delay", "not supported by drover: replicas are replaced as soon as they are ready (see monitor)")
    f.refuse("max_failure_ratio", "not supported by drover")
    f.done()
    return out


def _deploy(f: Fields, spec: dict[str, Any]) -> None:
    replicas = f.number("replicas")
    if replicas is not None:
        spec["replicas"] = replicas
    if f.get("mode", "replicated") != "replicated":
        f.problems.append((f.at("mode"), "only replicated is supported"))
    if f.has("update_config"):
        spec["update"] = _update(f.sub("update_config"))
    f.refuse("rollback_config", "not supported by drover: a failed rollout rolls back to the previous revision")
    resources = f.sub("resources")
    limits, reservations = resources.sub("limits"), resources.sub("reservations")
    # One figure serves placement and limit: the limit when given, else the reservation.
    res: dict[str, Any] = {}
    cpus = limits.get("cpus", reservations.get("cpus"))
    if cpus is not None:
        try:
            res["cpu"] = float(cpus)
        except (TypeError, ValueError):
            f.problems.append((limits.at("cpus"), "must be a number of cpus like 0.5"))
    memory = _memory(limits, "memory") if limits.has("memory") else _memory(reservations, "memory")
    if memory is not None:
        res["memory"] = units.format_memory(memory)
    limits.done(" (only cpus and memory)")
    reservations.done(" (only cpus and memory)")
    resources.done()
    if res:
        spec["resources"] = res
    policy = f.sub("restart_policy")
    condition = policy.get("condition")
    if condition is not None:
        if condition not in _CONDITION:
            policy.problems.append((policy.at("condition"), "must be any, on-failure or none"))
        else:
            spec["restart"] = _CONDITION[condition]
    policy.done(" (only condition)")
    placement = f.sub("placement")
    constraints = placement.get("constraints", [])
    if constraints:
        spec["placement"] = {"constraints": list(constraints)}
    placement.done(" (only constraints)")
    f.done()


def convert_service(name: str, body: Any, path: str, problems: list[Problem]) -> dict[str, Any]:
    """The drover manifest of one Compose service ``name`` found at ``path`` (``services.web``)."""
    f = Fields(body, path, problems)
    spec: dict[str, Any] = {}
    image = f.text("image")
    f.refuse("build", "drover runs images and does not build: build and push it, then give image")
    if not image:
        problems.append((f.at("image"), "is required"))
    spec["image"] = image or ""
    command = _command(f, "command")
    if command is not None:
        spec["command"] = command
    env = _environment(f)
    if env:
        spec["env"] = env
    ports = _ports(f)
    if ports:
        spec["ports"] = ports
    volumes = _volumes(f)
    if volumes:
        spec["volumes"] = volumes
    pull = f.get("pull_policy")
    if pull is not None:
        if pull not in _PULL:
            problems.append((f.at("pull_policy"), "must be always, missing, if_not_present or never"))
        else:
            spec["pull"] = _PULL[pull]
    restart = f.get("restart")
    if restart is not None:
        if restart not in _RESTART:
            problems.append((f.at("restart"), "must be always, unless-stopped, on-failure or no"))
        else:
            spec["restart"] = _RESTART[restart]
    if f.has("deploy"):
        _deploy(f.sub("deploy"), spec)
    if f.has("healthcheck"):
        health = _healthcheck(f.sub("healthcheck"))
        if health is not None:
            spec["health"] = health
    grace = _duration(f, "stop_grace_period")
    if grace is not None:
        spec["stop_grace"] = grace
    mode = f.get("network_mode")
    if mode == "host":
        spec["network"] = "host"
    elif mode not in (None, "bridge"):
        problems.append((f.at("network_mode"), "must be bridge or host"))
    f.done(_HINT)
    return {"apiVersion": "drover/v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def convert_file(doc: Any, problems: list[Problem]) -> list[dict[str, Any]]:
    """Every Compose service of one Compose document, in file order."""
    top = Fields(doc, "", problems, ignore=("version", "name"))
    declared = top.sub("volumes")
    for vname, decl in declared.data.items():
        # Named volumes are the node engine's own (created on first use); only plain declarations fit.
        declared.get(vname)
        d = Fields(decl, declared.at(str(vname)), problems)
        d.get("external")
        d.done(" (drover uses the node engine's volume of that name)")
    for key in doc:
        if isinstance(key, str) and key.startswith("x-"):
            top.get(key)  # extension fields hold YAML anchors for the services
    out = []
    services = top.sub("services")
    for name, body in services.data.items():
        services.get(name)
        out.append(convert_service(str(name), body, services.at(str(name)), problems))
    if services.ok and not services.data:
        problems.append(("services", "has no services"))
    top.done(" (drover reads services:)")
    return out
