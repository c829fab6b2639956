"""Kubernetes Deployment + Service and Compose files → drover manifests, or field-named errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from drover.shared.manifest import ManifestError, parse_manifests

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def parse(text: str, name: str = "in.yaml") -> list[dict[str, Any]]:
    return [{"name": m.name, "labels": m.metadata.labels, **m.spec_dict()} for m in parse_manifests([(name, text)])]


def problems(text: str, name: str = "in.yaml") -> list[str]:
    with pytest.raises(ManifestError) as info:
        parse_manifests([(name, text)])
    return info.value.lines()


def deployment(**container: Any) -> dict[str, Any]:
    body = {"name": "c", "image": "local/busybox:latest", **container}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "api"}},
            "template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [body]}},
        },
    }


def dump(*docs: Any) -> str:
    return yaml.safe_dump_all(docs)


def test_example_deployment_and_service_become_one_service() -> None:
    (web,) = parse((EXAMPLES / "k8s-web.yaml").read_text())
    assert web["name"] == "web"
    assert web["replicas"] == 2
    assert web["command"] == ["httpd", "-f", "-p", "8080", "-h", "/www"]
    assert web["env"] == {"GREETING": "hi"}
    assert web["ports"] == [{"name": "http", "container": 8080, "expose": 18080, "protocol": "tcp"}]
    assert web["resources"] == {"cpu": 0.1, "memory": 64 * 1024 * 1024}  # limit over request
    assert web["health"]["http"] == {"path": "/", "port": 8080}  # named port resolved
    assert (web["health"]["interval"], web["health"]["failure_threshold"]) == (1.0, 2)
    assert web["update"]["max_surge"] == 1 and web["update"]["max_unavailable"] == 0
    assert web["update"]["min_ready"] == 1.0


def test_example_compose_file_becomes_one_service_per_compose_service() -> None:
    shop, cache = parse((EXAMPLES / "compose.yaml").read_text())
    assert (shop["name"], cache["name"]) == ("shop", "cache")
    assert shop["command"] == ["httpd", "-f", "-p", "8000", "-h", "/www"]
    assert shop["env"] == {"MODE": "prod"} and cache["env"] == {"ROLE": "cache"}
    assert shop["ports"][0]["container"] == 8000 and shop["ports"][0]["expose"] == 18000
    assert shop["replicas"] == 2 and cache["replicas"] == 1
    assert shop["update"]["max_surge"] == 1 and shop["update"]["auto_rollback"] is True
    assert shop["resources"] == {"cpu": 0.1, "memory": 32 * 1024 * 1024}
    assert shop["health"]["exec"]["command"][0] == "wget"
    assert shop["health"]["failure_threshold"] == 3


def test_service_in_another_file_targets_its_port_by_number() -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "front"},
        "spec": {"selector": {"app": "api"}, "ports": [{"port": 19000, "targetPort": 9000}]},
    }
    out = parse_manifests([("d.yaml", dump(deployment(ports=[{"containerPort": 9000}]))), ("s.yaml", dump(svc))])
    assert [p.model_dump() for p in out[0].spec.ports] == [
        {"name": None, "container": 9000, "expose": 19000, "protocol": "tcp"}
    ]


def test_probes_resources_and_strategy() -> None:
    d = deployment(
        ports=[{"containerPort": 80}],
        livenessProbe={"tcpSocket": {"port": 80}, "periodSeconds": 5, "timeoutSeconds": 2, "initialDelaySeconds": 3},
        resources={"requests": {"cpu": "250m", "memory": "128Mi"}},
        args=["sleep", "9"],
    )
    d["spec"]["strategy"] = {"type": "Recreate"}
    d["spec"]["progressDeadlineSeconds"] = 60
    (api,) = parse(dump(d))
    assert api["command"] == ["sleep", "9"]
    assert api["health"]["tcp"] == {"port": 80}
    assert (api["health"]["interval"], api["health"]["timeout"], api["health"]["initial_delay"]) == (5.0, 2.0, 3.0)
    assert api["resources"] == {"cpu": 0.25, "memory": 128 * 1024 * 1024}
    assert api["update"]["max_surge"] == 0 and api["update"]["max_unavailable"] == "100%"
    assert api["update"]["progress_deadline"] == 60.0
    exec_probe = deployment(readinessProbe={"exec": {"command": ["true"]}, "failureThreshold": 4})
    assert parse(dump(exec_probe))[0]["health"]["exec"] == {"command": ["true"]}


def test_unsupported_kubernetes_fields_are_named() -> None:
    d = deployment(securityContext={"privileged": True}, env=[{"name": "A", "valueFrom": {}}])
    d["spec"]["template"]["spec"]["volumes"] = [{"name": "x"}]
    d["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "x"})
    lines = problems(dump(d))
    base = "in.yaml[doc 1] spec.template.spec"
    assert f"{base}.containers[0].securityContext: not supported by drover" in " ".join(lines)
    assert any(line.startswith(f"{base}.containers[0].env[0].valueFrom: ") for line in lines)
    assert f"{base}.volumes[0]: needs hostPath: drover mounts hostPath volumes only" in lines
    assert any(line.startswith(f"{base}.containers[1]: drover runs one container") for line in lines)


def test_bad_probe_and_service_problems() -> None:
    d = deployment(ports=[{"containerPort": 80}], readinessProbe={"grpc": {"port": 80}})
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"selector": {"app": "api"}, "ports": [{"port": 80, "targetPort": "web", "nodePort": 30080}]},
    }
    lines = problems(dump(d, svc))
    probe = "in.yaml[doc 1] spec.template.spec.containers[0].readinessProbe.grpc: "
    assert any(line.startswith(probe) for line in lines)
    assert "in.yaml[doc 2] spec.ports[0].targetPort: no container port is named 'web'" in lines
    assert any(line.startswith("in.yaml[doc 2] spec.ports[0].nodePort: ") for line in lines)
    orphan = dict(svc, spec={"selector": {"app": "other"}, "ports": [{"port": 80}]})
    assert any("spec.selector: selects no Deployment" in line for line in problems(dump(orphan)))


def test_native_validation_still_applies_to_converted_documents() -> None:
    d = deployment()
    d["metadata"]["name"] = "Not_A_Label"
    assert any(line.startswith("in.yaml[doc 1] metadata.name: must be a DNS label") for line in problems(dump(d)))


COMPOSE_BAD = """
version: "3"
services:
  web:
    image: local/busybox:latest
    build: .
    ports: ["127.0.0.1:80:80", "8080:80/udp"]
    environment: [NOPE]
    deploy:
      update_config: {delay: 10s}
      resources: {limits: {pids: 3}}
    healthcheck: {test: [WHAT]}
    container_name: fixed
networks: {front: {}}
"""


def test_unsupported_compose_fields_are_named() -> None:
    lines = problems(COMPOSE_BAD, "compose.yaml")
    where = "compose.yaml[doc 1]"
    for path in (
        "services.web.build",
        "services.web.ports[0]",
        "services.web.ports[1]",
        "services.web.environment[0]",
        "services.web.deploy.update_config.delay",
        "services.web.deploy.resources.limits.pids",
        "services.web.healthcheck.test",
        "services.web.container_name",
        "networks",
    ):
        assert any(line.startswith(f"{where} {path}: ") for line in lines), (path, lines)


def test_compose_forms() -> None:
    text = """
services:
  a:
    image: local/busybox:latest
    command: ["sleep", 60]
    environment: {N: 1, B: true}
    ports: [{target: 80, published: "8081"}, "90"]
    restart: unless-stopped
    stop_grace_period: 1m30s
    healthcheck: {test: "wget -q localhost", start_period: 5s}
    deploy: {restart_policy: {condition: on-failure}, resources: {reservations: {cpus: 0.5, memory: 1g}}}
"""
    (a,) = parse(text)
    assert a["command"] == ["sleep", "60"]
    assert a["env"] == {"N": "1", "B": "true"}
    assert [(p["container"], p["expose"]) for p in a["ports"]] == [(80, 8081), (90, None)]
    assert a["restart"] == "on-failure"  # deploy.restart_policy wins over restart
    assert a["stop_grace"] == 90.0
    assert a["health"]["exec"]["command"] == ["/bin/sh", "-c", "wget -q localhost"]
    assert a["health"]["initial_delay"] == 5.0
    assert a["resources"] == {"cpu": 0.5, "memory": 1024**3}


def test_native_documents_pass_untouched_beside_foreign_ones() -> None:
    native = (EXAMPLES / "web.yaml").read_text()
    out = parse_manifests([("web.yaml", native), ("compose.yaml", (EXAMPLES / "compose.yaml").read_text())])
    assert [m.name for m in out] == ["web", "shop", "cache"]


def test_compose_volumes_and_pull_policy() -> None:
    text = """
services:
  db:
    image: local/busybox:latest
    pull_policy: never
    volumes:
      - /srv/db:/data:ro
      - cache:/cache
      - {type: bind, source: /etc/app, target: /etc/app, read_only: true}
volumes:
  cache: {}
"""
    (db,) = parse(text)
    assert db["pull"] == "never"
    assert [(v["host"], v["volume"], v["container"], v["readonly"]) for v in db["volumes"]] == [
        ("/srv/db", None, "/data", True),
        (None, "cache", "/cache", False),
        ("/etc/app", None, "/etc/app", True),
    ]
    bad = text.replace("/srv/db:/data:ro", "./db:/data").replace("cache: {}", "cache: {driver: nfs}")
    lines = problems(bad)
    relative = "in.yaml[doc 1] services.db.volumes[0]: a bind mount needs an absolute"
    assert any(line.startswith(relative) for line in lines)
    assert any(line.startswith("in.yaml[doc 1] volumes.cache.driver: not supported") for line in lines)


def test_kubernetes_image_pull_policy() -> None:
    assert parse(dump(deployment(imagePullPolicy="Always")))[0]["pull"] == "always"
    assert any(".imagePullPolicy: must be" in line for line in problems(dump(deployment(imagePullPolicy="Sometimes"))))


def test_kubernetes_host_path_volumes() -> None:
    d = deployment(volumeMounts=[{"name": "data", "mountPath": "/data", "readOnly": True}])
    d["spec"]["template"]["spec"]["volumes"] = [{"name": "data", "hostPath": {"path": "/srv/data"}}]
    expected = {"host": "/srv/data", "volume": None, "container": "/data", "readonly": True}
    assert parse(dump(d))[0]["volumes"] == [expected]
    d["spec"]["template"]["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    lines = problems(dump(d))
    empty_dir = "in.yaml[doc 1] spec.template.spec.volumes[0].emptyDir: not supported"
    assert any(line.startswith(empty_dir) for line in lines)
    assert any(".volumeMounts[0].name: no hostPath volume named 'data'" in line for line in lines)


KUBECTL_EXPORT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  creationTimestamp: null
  labels: {app: hello}
  name: hello
spec:
  replicas: 1
  selector: {matchLabels: {app: hello}}
  strategy: {}
  template:
    metadata:
      creationTimestamp: null
      labels: {app: hello}
    spec:
      containers:
      - image: local/busybox:latest
        name: busybox
        resources: {}
        terminationMessagePath: /dev/termination-log
        terminationMessagePolicy: File
      dnsPolicy: ClusterFirst
      schedulerName: default-scheduler
      securityContext: {}
status: {}
"""


def test_what_kubectl_writes_out_is_accepted_and_other_values_are_not() -> None:
    (hello,) = parse(KUBECTL_EXPORT)
    assert hello["name"] == "hello" and hello["image"] == "local/busybox:latest"
    changed = KUBECTL_EXPORT.replace("dnsPolicy: ClusterFirst", "dnsPolicy: None")
    lines = problems(changed.replace("securityContext: {}", "securityContext: {runAsUser: 1}"))
    assert any(line.startswith("in.yaml[doc 1] spec.template.spec.dnsPolicy: not supported") for line in lines)
    assert any(line.startswith("in.yaml[doc 1] spec.template.spec.securityContext: not supported") for line in lines)
