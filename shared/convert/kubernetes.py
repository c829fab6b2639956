"""Kubernetes ``apps/v1 Deployment`` (with a ``v1 Service`` for its ports) → a drover Service.

The Deployment's name becomes the service's name; its first and only container gives image, command
(``command`` + ``args``), env, ports, resources and the health check (``readinessProbe``, else
``livenessProbe``); ``replicas``, ``strategy``, ``minReadySeconds`` and ``progressDeadlineSeconds`` become
``replicas`` and ``update``. A Service selecting the Deployment's pods turns each of its ports into an
``expose`` port (``port``) of a container port (``targetPort``). Every other field is a problem naming it.
"""

from __future__ import annotations

from typing import Any

from drover.shared.convert.fields import Fields, Problem

_PULL = {"Always": "always", "IfNotPresent": "if-missing", "Never": "never"}
_HINT = " (drover honours image, command, args, env, ports, resources, probes, volumeMounts)"


def is_deployment(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("kind") == "Deployment" and doc.get("apiVersion") == "apps/v1"


def is_service(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("kind") == "Service" and doc.get("apiVersion") == "v1"


def _metadata(doc: Fields, problems: list[Problem]) -> tuple[str, dict[str, Any]]:
    meta = doc.sub("metadata")
    name = meta.text("name") or ""
    if not name:
        problems.append((meta.at("name"), "is required"))
    namespace = meta.get("namespace")
    if namespace not in (None, "default"):
        problems.append((meta.at("namespace"), "drover has no namespaces: leave it out or use 'default'"))
    for key in ("annotations", "creationTimestamp", "uid", "resourceVersion", "generation", "managedFields"):
        meta.get(key)  # informational, or written by the API server: nothing to honour
    labels = meta.get("labels", {})
    meta.done()
    return name, labels if isinstance(labels, dict) else {}


def _seconds(f: Fields, key: str, *, minimum: float = 0) -> str | None:
    value = f.number(key, minimum=minimum)
    return None if value is None else f"{value}s"


def _probe(f: Fields, named_ports: dict[str, int]) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    kinds = [k for k in ("httpGet", "tcpSocket", "exec") if f.has(k)]
    f.refuse("grpc", "grpc probes are not supported by drover: use httpGet, tcpSocket or exec")
    if len(kinds) != 1:
        f.problems.append((f.path, "needs exactly one of httpGet, tcpSocket, exec"))
        return None
    kind = kinds[0]
    action = f.sub(kind)
    if kind in ("httpGet", "tcpSocket"):
        port = _target_port(action, "port", named_ports)
        body: dict[str, Any] = {"port": port}
        if kind == "httpGet":
            body["path"] = action.text("path") or "/"
            scheme = action.get("scheme", "HTTP")
            if scheme != "HTTP":
                action.problems.append((action.at("scheme"), "only HTTP probes are supported"))
            action.refuse("httpHeaders", "probe headers are not supported by drover")
        action.refuse("host", "probes always target the container")
        out["http" if kind == "httpGet" else "tcp"] = body
    else:
        out["exec"] = {"command": action.get("command")}
    action.done()
    for key, target in (
        ("periodSeconds", "interval"),
        ("timeoutSeconds", "timeout"),
        ("initialDelaySeconds", "initial_delay"),
    ):
        value = _seconds(f, key, minimum=1 if key != "initialDelaySeconds" else 0)
        if value is not None:
            out[target] = value
    threshold = f.number("failureThreshold", minimum=1)
    if threshold is not None:
        out["failure_threshold"] = threshold
    if f.get("successThreshold", 1) != 1:
        f.problems.append((f.at("successThreshold"), "must be 1: drover marks a replica ready on one success"))
    f.refuse("terminationGracePeriodSeconds", "set the pod's terminationGracePeriodSeconds instead")
    f.done()
    return out


def _target_port(f: Fields, key: str, named_ports: dict[str, int]) -> int | None:
    value = f.get(key)
    if isinstance(value, str) and not value.isdigit():
        if value not in named_ports:
            f.problems.append((f.at(key), f"no container port is named {value!r}"))
            return None
        return named_ports[value]
    if isinstance(value, str):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        f.problems.append((f.at(key), "must be a port number 1-65535 or a container port's name"))
        return None
    return value


def _resources(f: Fields) -> dict[str, Any]:
    # drover uses one figure for placement and as the limit: the limit when given (the container may use
    # that much), else the request.
    requests, limits = f.sub("requests"), f.sub("limits")
    out: dict[str, Any] = {}
    for key in ("cpu", "memory"):
        value = limits.get(key, requests.get(key))
        if value is not None:
            out[key] = value
    requests.done(" (only cpu and memory)")
    limits.done(" (only cpu and memory)")
    f.done()
    return out


def _pod_volumes(pod: Fields) -> dict[str, str]:
    """``{volume name: host path}`` of the pod's ``hostPath`` volumes (the only kind drover can honour)."""
    out: dict[str, str] = {}
    for path, item in pod.items("volumes"):
        v = Fields(item, path, pod.problems)
        name = v.text("name")
        host = v.sub("hostPath")
        where = host.text("path")
        host.get("type")
        host.done()
        v.done(": drover mounts hostPath volumes only", strict=True)
        if not v.has("hostPath") and len(v.data) <= 1:
            v.problems.append((path, "needs hostPath: drover mounts hostPath volumes only"))
        if name and where:
            out[name] = where
    return out


def _mounts(f: Fields, volumes: dict[str, str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path, item in f.items("volumeMounts"):
        m = Fields(item, path, f.problems)
        name, target = m.text("name"), m.text("mountPath")
        readonly = m.get("readOnly", False) is True
        m.refuse("subPath", "not supported by drover")
        m.done()
        if name not in volumes:
            f.problems.append((m.at("name"), f"no hostPath volume named {name!r} in the pod's volumes"))
            continue
        mount: dict[str, Any] = {"host": volumes[name], "container": target}
        if readonly:
            mount["readonly"] = True
        out.append(mount)
    return out


def _container(f: Fields, volumes: dict[str, str]) -> tuple[dict[str, Any], dict[str, int]]:
    spec: dict[str, Any] = {}
    f.get("name")  # the container's name has no drover counterpart and needs none
    image = f.text("image")
    if not image:
        f.problems.append((f.at("image"), "is required"))
    spec["image"] = image or ""
    command, args = f.get("command"), f.get("args")
    for key, value in (("command", command), ("args", args)):
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            f.problems.append((f.at(key), "must be a list of strings"))
    if isinstance(command, list) or isinstance(args, list):
        spec["command"] = [*(command or []), *(args or [])]
    env: dict[str, Any] = {}
    for path, item in f.items("env"):
        e = Fields(item, path, f.problems)
        name = e.text("name")
        e.refuse("valueFrom", "valueFrom is not supported by drover: give a value")
        if name:
            env[name] = e.get("value", "")
        e.done()
    f.refuse("envFrom", "envFrom is not supported by drover: list the variables under env")
    if env:
        spec["env"] = env
    ports: list[dict[str, Any]] = []
    named: dict[str, int] = {}
    for path, item in f.items("ports"):
        p = Fields(item, path, f.problems)
        number = p.get("containerPort")
        port: dict[str, Any] = {"container": number}
        name = p.text("name")
        if name:
            port["name"] = name
            if isinstance(number, int):
                named[name] = number
        if p.get("protocol", "TCP") != "TCP":
            f.problems.append((p.at("protocol"), "only TCP is supported"))
        p.refuse("hostPort", "drover publishes ports on its own; expose a port through a v1 Service instead")
        p.refuse("hostIP", "drover publishes ports on its own; expose a port through a v1 Service instead")
        p.done()
        ports.append(port)
    if ports:
        spec["ports"] = ports
    mounts = _mounts(f, volumes)
    if mounts:
        spec["volumes"] = mounts
    resources = _resources(f.sub("resources"))
    if resources:
        spec["resources"] = resources
    probe_key = "readinessProbe" if f.has("readinessProbe") else "livenessProbe"
    if f.has("readinessProbe") and f.has("livenessProbe") and f.data["readinessProbe"] != f.data["livenessProbe"]:
        f.problems.append(
            (f.at("livenessProbe"), "drover has one health check: give only readinessProbe, or the same probe twice")
        )
    f.get("livenessProbe")
    f.get("readinessProbe")
    if f.has(probe_key):
        health = _probe(Fields(f.data[probe_key], f.at(probe_key), f.problems), named)
        if health is not None:
            spec["health"] = health
    f.accept("terminationMessagePath", "/dev/termination-log")
    f.accept("terminationMessagePolicy", "File")
    f.refuse("startupProbe", "startupProbe is not supported by drover: use initialDelaySeconds on the probe")
    pull = f.get("imagePullPolicy")
    if pull is not None:
        if pull not in _PULL:
            f.problems.append((f.at("imagePullPolicy"), "must be Always, IfNotPresent or Never"))
        else:
            spec["pull"] = _PULL[pull]
    f.done(_HINT)
    return spec, named


def _strategy(spec: Fields) -> dict[str, Any]:
    update: dict[str, Any] = {}
    strategy = spec.sub("strategy")
    kind = strategy.get("type", "RollingUpdate")
    rolling = strategy.sub("rollingUpdate")
    if kind == "Recreate":
        update.update(max_surge=0, max_unavailable="100%")
    elif kind == "RollingUpdate":
        # Kubernetes' defaults are 25 % / 25 %, not drover's 1 / 0: keep what a Deployment would do.
        update["max_surge"] = rolling.get("maxSurge", "25%")
        update["max_unavailable"] = rolling.get("maxUnavailable", "25%")
    else:
        strategy.problems.append((strategy.at("type"), "must be RollingUpdate or Recreate"))
    rolling.done()
    strategy.done()
    ready = _seconds(spec, "minReadySeconds")
    if ready is not None:
        update["min_ready"] = ready
    deadline = _seconds(spec, "progressDeadlineSeconds", minimum=1)
    if deadline is not None:
        update["progress_deadline"] = deadline
    return update


def _selector(spec: Fields, pod_labels: dict[str, Any]) -> None:
    selector = spec.sub("selector")
    match = selector.get("matchLabels", {})
    selector.refuse("matchExpressions", "not supported by drover: use matchLabels")
    selector.done()
    if isinstance(match, dict) and any(pod_labels.get(k) != v for k, v in match.items()):
        spec.problems.append((selector.at("matchLabels"), "must match spec.template.metadata.labels"))


def convert_deployment(doc: Any, problems: list[Problem]) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    """The drover manifest of a Deployment, its pod labels (for Services) and its named ports."""
    top = Fields(doc, "", problems, ignore=("apiVersion", "kind", "status"))
    name, labels = _metadata(top, problems)
    spec = top.sub("spec")
    top.done()
    out: dict[str, Any] = {}
    template = spec.sub("template")
    pod_meta = template.sub("metadata")
    pod_labels = pod_meta.get("labels", {})
    pod_labels = pod_labels if isinstance(pod_labels, dict) else {}
    for key in ("annotations", "creationTimestamp"):
        pod_meta.get(key)
    pod_meta.done()
    pod = template.sub("spec")
    template.done()
    containers = pod.items("containers")
    named: dict[str, int] = {}
    if not containers:
        problems.append((pod.at("containers"), "needs exactly one container"))
        out["image"] = ""
    else:
        if len(containers) > 1:
            problems.append((containers[1][0], "drover runs one container per replica: give exactly one"))
        body, named = _container(Fields(containers[0][1], containers[0][0], problems), _pod_volumes(pod))
        out.update(body)
    restart = pod.get("restartPolicy", "Always")
    if restart != "Always":
        problems.append((pod.at("restartPolicy"), "a Deployment's pods restart Always"))
    grace = _seconds(pod, "terminationGracePeriodSeconds")
    if grace is not None:
        out["stop_grace"] = grace
    if pod.get("hostNetwork") is True:
        out["network"] = "host"
    selectors = pod.get("nodeSelector", {})
    if isinstance(selectors, dict) and selectors:
        out["placement"] = {"constraints": [f"node.labels.{k} == {v}" for k, v in selectors.items()]}
    # What `kubectl get -o yaml` writes out as defaults asks for nothing drover does differently.
    pod.accept("dnsPolicy", "ClusterFirst")
    pod.accept("schedulerName", "default-scheduler")
    pod.done(" in a pod spec (drover honours containers, volumes, restartPolicy, nodeSelector, hostNetwork)")
    replicas = spec.number("replicas")
    out["replicas"] = 1 if replicas is None else replicas
    _selector(spec, pod_labels)
    update = _strategy(spec)
    if update:
        out["update"] = update
    if spec.get("paused", False) is not False:
        problems.append((spec.at("paused"), "create it unpaused and use 'drover rollout pause'"))
    spec.get("revisionHistoryLimit")  # drover keeps its own history
    spec.done()
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = labels
    manifest = {"apiVersion": "drover/v1", "kind": "Service", "metadata": metadata, "spec": out}
    return manifest, pod_labels, named


def service_selector(doc: Any) -> dict[str, Any]:
    spec = doc.get("spec") if isinstance(doc, dict) else None
    selector = spec.get("selector") if isinstance(spec, dict) else None
    return selector if isinstance(selector, dict) else {}


def apply_service(doc: Any, target: dict[str, Any], named: dict[str, int], problems: list[Problem]) -> None:
    """Fold a v1 Service's ports into the drover manifest ``target`` of the Deployment it selects."""
    top = Fields(doc, "", problems, ignore=("apiVersion", "kind", "status"))
    _metadata(top, problems)
    spec = top.sub("spec")
    top.done()
    spec.get("selector")
    kind = spec.get("type", "ClusterIP")
    if kind not in ("ClusterIP", "NodePort", "LoadBalancer"):
        problems.append((spec.at("type"), "must be ClusterIP, NodePort or LoadBalancer (all served by drover's proxy)"))
    for key in ("clusterIP", "clusterIPs"):
        value = spec.get(key)
        if value not in (None, "") and key == "clusterIP" and value != "None":
            problems.append((spec.at(key), "drover has no cluster IPs: services answer on each node's proxy"))
        elif value == "None":
            problems.append((spec.at(key), "headless services are not supported by drover"))
    ports: list[dict[str, Any]] = target["spec"].setdefault("ports", [])
    for path, item in spec.items("ports"):
        p = Fields(item, path, problems)
        expose = p.get("port")
        if isinstance(expose, bool) or not isinstance(expose, int) or not 1 <= expose <= 65535:
            problems.append((p.at("port"), "must be an integer 1-65535"))
            expose = None
        container = _target_port(p, "targetPort", named) if p.has("targetPort") else expose
        if p.get("protocol", "TCP") != "TCP":
            problems.append((p.at("protocol"), "only TCP is supported"))
        p.refuse("nodePort", "drover exposes 'port' on every node's proxy; leave nodePort out")
        p.get("name")
        p.get("appProtocol")
        p.done()
        if expose is None or container is None:
            continue
        existing = next((x for x in ports if x.get("container") == container), None)
        if existing is None:
            existing = {"container": container}
            if p.has("name"):
                existing["name"] = p.data["name"]
            ports.append(existing)
        if "expose" in existing:
            problems.append((p.at("targetPort"), f"container port {container} is already exposed"))
        existing["expose"] = expose
    spec.done(" in a Service (drover honours selector, type and ports)")
