from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drover.shared.errors import ValidationError
from drover.shared.manifest import (
    Constraint,
    ManifestError,
    ServiceManifest,
    ServiceSpec,
    load_documents,
    parse_constraint,
    parse_manifests,
    revision_view,
    spec_hash,
)
from drover.shared.specchange import describe_change

FULL = """\
apiVersion: drover/v1
kind: Service
metadata:
  name: web                  # DNS label: [a-z0-9-], ≤63
  labels: {team: shop}
spec:
  image: local/busybox:latest
  command: ["httpd", "-f", "-p", "8080"]
  env: {GREETING: hi}
  replicas: 3
  network: bridge            # bridge (default) | host
  ports:
    - {name: http, container: 8080, expose: 18080}   # expose: port of the per-node proxy for this service
  resources: {cpu: 0.25, memory: 64Mi}               # requests used for placement and as limits
  health:                    # one of http / tcp / exec
    http: {path: /, port: 8080}
    interval: 2s
    timeout: 1s
    failure_threshold: 3
    initial_delay: 0s
  restart: always            # always | on-failure | never
  stop_grace: 10s            # SIGTERM, then SIGKILL after this
  update: {max_surge: 1, max_unavailable: 0, min_ready: 5s, progress_deadline: 120s, auto_rollback: true}
  autoscale: {min: 1, max: 10, cpu_percent: 70, memory_percent: null, rps_per_replica: null,
              scale_up_window: 0s, scale_down_window: 60s}
  placement:
    constraints: ["node.labels.zone == a", "node.name != n3"]
    spread: node.labels.zone
"""


def doc(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "drover/v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"image": "x", **spec},
    }


def problems_of(text: str, source: str = "web.yaml") -> list[str]:
    with pytest.raises(ManifestError) as info:
        parse_manifests([(source, text)])
    return info.value.lines()


def problems_of_doc(d: dict[str, Any]) -> list[str]:
    return problems_of(json.dumps(d))


# -- good manifests ------------------------------------------------------------------------------------


def test_full_example_yaml() -> None:
    [m] = parse_manifests([("web.yaml", FULL)])
    assert m.metadata.name == "web" and m.name == "web"
    assert m.metadata.labels == {"team": "shop"}
    s = m.spec
    assert s.image == "local/busybox:latest"
    assert s.command == ["httpd", "-f", "-p", "8080"]
    assert s.env == {"GREETING": "hi"}
    assert s.replicas == 3
    assert s.ports[0].name == "http" and s.ports[0].container == 8080 and s.ports[0].expose == 18080
    assert s.resources.cpu == 0.25 and s.resources.memory == 64 * 1024 * 1024
    assert s.health is not None and s.health.http is not None and s.health.http.port == 8080
    assert (s.health.interval, s.health.timeout, s.health.initial_delay) == (2.0, 1.0, 0.0)
    assert s.stop_grace == 10.0
    assert s.update.min_ready == 5.0 and s.update.progress_deadline == 120.0
    assert s.autoscale is not None and s.autoscale.cpu_percent == 70 and s.autoscale.scale_down_window == 60.0
    assert s.placement.parsed_constraints() == [
        Constraint("zone", True, "a"),
        Constraint(None, False, "n3"),
    ]
    assert s.placement.spread == "node.labels.zone"


def test_full_example_json() -> None:
    data = yaml.safe_load(FULL)
    [m] = parse_manifests([("web.json", json.dumps(data, indent=2))])
    [y] = parse_manifests([("web.yaml", FULL)])
    assert m == y


def test_defaults() -> None:
    [m] = parse_manifests([("-", json.dumps(doc()))])
    s = m.spec
    assert s.command is None and s.env == {} and s.replicas == 1 and s.network == "bridge"
    assert s.resources.cpu == 0.1 and s.resources.memory == 64 * 1024 * 1024
    assert s.health is None and s.autoscale is None and s.restart == "always" and s.stop_grace == 10.0
    assert s.update.max_surge == 1 and s.update.max_unavailable == 0 and s.update.auto_rollback is True


def test_multi_doc_yaml_and_json_list() -> None:
    text = FULL + "---\n" + yaml.safe_dump(doc("api")) + "---\n"
    assert [m.name for m in parse_manifests([("a.yaml", text)])] == ["web", "api"]
    listed = json.dumps([doc("a"), doc("b"), doc("c")])
    assert [m.name for m in parse_manifests([("l.json", listed)])] == ["a", "b", "c"]


def test_several_sources() -> None:
    got = parse_manifests([("a.yaml", yaml.safe_dump(doc("a"))), ("b.json", json.dumps(doc("b")))])
    assert [m.name for m in got] == ["a", "b"]


def test_load_documents_numbers_and_skips_empty() -> None:
    text = "a: 1\n---\n---\nb: 2\n"
    assert load_documents(text, "f") == [(1, {"a": 1}), (3, {"b": 2})]
    assert load_documents("", "f") == []
    assert load_documents('[{"a": 1}, {"b": 2}]', "f") == [(1, {"a": 1}), (2, {"b": 2})]


def test_yaml_syntax_error_has_line_and_column() -> None:
    with pytest.raises(ManifestError) as info:
        load_documents("spec:\n  image: [x\n", "-")
    [line] = info.value.lines()
    assert line.startswith("<stdin>: invalid YAML at line ")
    assert "column" in line


def test_duplicate_yaml_key() -> None:
    [line] = problems_of("a: 1\nb: 2\na: 3\n")
    assert line == "web.yaml: invalid YAML at line 3, column 1: duplicate key 'a'"


def test_unit_strings_and_env_coercion() -> None:
    d = doc(
        env={"A": 1, "B": True, "C": 1.5, "D": "x"},
        resources={"cpu": "250m", "memory": "1Gi"},
        stop_grace="1m30s",
        update={"max_surge": "25%", "max_unavailable": "10%"},
    )
    [m] = parse_manifests([("-", json.dumps(d))])
    assert m.spec.env == {"A": "1", "B": "true", "C": "1.5", "D": "x"}
    assert m.spec.resources.cpu == 0.25 and m.spec.resources.memory == 1024**3
    assert m.spec.stop_grace == 90.0
    assert m.spec.update.max_surge == "25%"


def test_host_network_allows_expose_and_any_health_port() -> None:
    d = doc(network="host", ports=[{"container": 8080, "expose": 18080}], health={"tcp": {"port": 9090}})
    parse_manifests([("-", json.dumps(d))])


# -- bad manifests -------------------------------------------------------------------------------------


def test_unknown_field_did_you_mean() -> None:
    d = doc()
    d["spec"]["replica"] = 2
    assert problems_of_doc(d) == ["web.yaml[doc 1] spec.replica: unknown field (did you mean 'replicas'?)"]


def test_unknown_field_without_suggestion() -> None:
    d = doc()
    d["spec"]["zzzz"] = 1
    assert problems_of_doc(d) == ["web.yaml[doc 1] spec.zzzz: unknown field"]


def test_port_out_of_range() -> None:
    assert problems_of_doc(doc(ports=[{"container": 70000}])) == [
        "web.yaml[doc 1] spec.ports[0].container: must be an integer 1-65535"
    ]
    assert problems_of_doc(doc(ports=[{"container": "http"}])) == [
        "web.yaml[doc 1] spec.ports[0].container: must be an integer 1-65535"
    ]


def test_bad_name() -> None:
    [line] = problems_of_doc(doc("Web_1"))
    assert line.startswith("web.yaml[doc 1] metadata.name: must be a DNS label")
    [line] = problems_of_doc(doc("a" * 64))
    assert line.startswith("web.yaml[doc 1] metadata.name: must be a DNS label")


def test_bad_duration() -> None:
    assert problems_of_doc(doc(stop_grace="soon")) == [
        "web.yaml[doc 1] spec.stop_grace: must be a duration like 500ms, 2s or 1m"
    ]
    assert problems_of_doc(doc(health={"tcp": {"port": 1}, "interval": "2x"}, ports=[{"container": 1}])) == [
        "web.yaml[doc 1] spec.health.interval: must be a duration like 500ms, 2s or 1m"
    ]


def test_command_as_string() -> None:
    assert problems_of_doc(doc(command="httpd -f")) == [
        "web.yaml[doc 1] spec.command: must be a list of strings"
    ]
    assert problems_of_doc(doc(command=["sleep", 10])) == [
        "web.yaml[doc 1] spec.command[1]: must be a string"
    ]


def test_missing_image() -> None:
    d = doc()
    del d["spec"]["image"]
    assert problems_of_doc(d) == ["web.yaml[doc 1] spec.image: required"]
    assert problems_of_doc(doc(image="")) == ["web.yaml[doc 1] spec.image: must not be empty"]


def test_wrong_types_and_literals() -> None:
    assert problems_of_doc(doc(replicas="three")) == ["web.yaml[doc 1] spec.replicas: must be an integer"]
    assert problems_of_doc(doc(replicas=-1)) == ["web.yaml[doc 1] spec.replicas: must be an integer >= 0"]
    assert problems_of_doc(doc(network="bridged")) == [
        "web.yaml[doc 1] spec.network: must be one of bridge, host"
    ]
    assert problems_of_doc(doc(restart="sometimes")) == [
        "web.yaml[doc 1] spec.restart: must be one of always, on-failure, never"
    ]
    assert problems_of_doc(doc(resources=5)) == ["web.yaml[doc 1] spec.resources: must be a mapping"]
    assert problems_of_doc(doc(resources={"memory": "64MB"})) == [
        "web.yaml[doc 1] spec.resources.memory: must be a memory size like 64Mi, 1Gi or a number of bytes"
    ]
    assert problems_of_doc(doc(update={"auto_rollback": "maybe"})) == [
        "web.yaml[doc 1] spec.update.auto_rollback: must be true or false"
    ]


def test_document_level_problems() -> None:
    d = doc()
    d["kind"] = "Deployment"
    assert problems_of_doc(d) == ["web.yaml[doc 1]: kind must be Service"]
    assert problems_of("- 1\n- 2\n") == [
        "web.yaml[doc 1]: must be a mapping with apiVersion, kind, metadata and spec, not a int",
        "web.yaml[doc 2]: must be a mapping with apiVersion, kind, metadata and spec, not a int",
    ]


def test_env_names() -> None:
    assert problems_of_doc(doc(env={"1X": "a"})) == [
        "web.yaml[doc 1] spec.env.1X: must be a valid environment variable name: letters, digits and _, "
        "not starting with a digit"
    ]
    assert problems_of_doc(doc(env={"A": None})) == [
        "web.yaml[doc 1] spec.env.A: must be a string, number or boolean"
    ]


def test_cross_field_checks() -> None:
    bad_health = doc(ports=[{"container": 8080}], health={"http": {"port": 9090}})
    assert problems_of_doc(bad_health) == [
        "web.yaml[doc 1] spec.health.http.port: port 9090 is not among spec.ports[].container"
    ]
    dup = doc(
        ports=[{"name": "a", "container": 80, "expose": 1}, {"name": "a", "container": 80, "expose": 1}]
    )
    assert problems_of_doc(dup) == [
        "web.yaml[doc 1] spec.ports[1].name: duplicates spec.ports[0].name",
        "web.yaml[doc 1] spec.ports[1].container: duplicates spec.ports[0].container",
        "web.yaml[doc 1] spec.ports[1].expose: duplicates spec.ports[0].expose",
    ]
    assert problems_of_doc(doc(health={"interval": "2s"})) == [
        "web.yaml[doc 1] spec.health: exactly one of http, tcp, exec is required"
    ]
    assert problems_of_doc(doc(autoscale={"min": 5, "max": 2})) == [
        "web.yaml[doc 1] spec.autoscale.min: must be <= max (2)"
    ]
    assert problems_of_doc(doc(update={"max_surge": 0, "max_unavailable": 0})) == [
        "web.yaml[doc 1] spec.update.max_surge: max_surge and max_unavailable cannot both be 0"
    ]


def test_placement_syntax() -> None:
    assert problems_of_doc(doc(placement={"constraints": ["zone=a"]})) == [
        "web.yaml[doc 1] spec.placement.constraints[0]: "
        "must be like 'node.labels.<key> == value' or 'node.name != value': "
        "unknown attribute 'zone' (use node.name or node.labels.<key>)"
    ]
    assert problems_of_doc(doc(placement={"spread": "zone"})) == [
        "web.yaml[doc 1] spec.placement.spread: must be node.name or node.labels.<key>"
    ]


def test_two_docs_one_bad_lists_only_its_problems_and_returns_nothing() -> None:
    bad = doc("api", ports=[{"container": 0}])
    text = yaml.safe_dump(doc("web")) + "---\n" + yaml.safe_dump(bad)
    with pytest.raises(ManifestError) as info:
        parse_manifests([("app.yaml", text)])
    assert info.value.lines() == ["app.yaml[doc 2] spec.ports[0].container: must be an integer 1-65535"]
    assert info.value.problems == [("app.yaml[doc 2] spec.ports[0].container", "must be an integer 1-65535")]
    assert isinstance(info.value, ValidationError)


def test_problems_from_several_files_are_all_reported() -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifests(
            [("a.yaml", json.dumps(doc(replicas=-1))), ("-", "a: [1"), ("c.json", json.dumps(doc("c")))]
        )
    lines = info.value.lines()
    assert lines[0] == "a.yaml[doc 1] spec.replicas: must be an integer >= 0"
    assert lines[1].startswith("<stdin>: invalid YAML at line ")
    assert len(lines) == 2


def test_duplicate_names() -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifests([("a.yaml", json.dumps(doc("web"))), ("b.yaml", json.dumps([doc("x"), doc("web")]))])
    assert info.value.lines() == [
        "b.yaml[doc 2] metadata.name: duplicate service name 'web' (also in a.yaml[doc 1])"
    ]


# -- spec dicts, hashes, changes -----------------------------------------------------------------------


def full_manifest() -> ServiceManifest:
    return parse_manifests([("web.yaml", FULL)])[0]


def test_spec_dict_round_trip() -> None:
    m = full_manifest()
    d = m.spec_dict()
    json.dumps(d)
    assert d["resources"] == {"cpu": 0.25, "memory": 67108864}
    assert d["stop_grace"] == 10.0
    assert ServiceSpec.model_validate(d) == m.spec
    assert ServiceSpec.model_validate(json.loads(json.dumps(d))).model_dump(mode="json") == d


def test_spec_hash_ignores_replicas_only() -> None:
    d = full_manifest().spec_dict()
    h = spec_hash(d)
    assert len(h) == 64
    assert spec_hash({**d, "replicas": 7}) == h
    assert spec_hash(revision_view(d)) == h
    assert "replicas" not in revision_view(d)
    assert spec_hash({**d, "image": "local/busybox:v2"}) != h
    changed_autoscale = copy.deepcopy(d)
    changed_autoscale["autoscale"]["max"] = 20
    assert spec_hash(changed_autoscale) != h
    assert spec_hash({"image": "x"}) == spec_hash({"image": "x", "stop_grace": "10s", "replicas": 4})


def test_describe_change() -> None:
    old = full_manifest().spec_dict()
    new = {**old, "image": "local/busybox:v2"}
    assert describe_change(old, new) == "image=local/busybox:v2"
    new = {**old, "command": ["sleep", "1"], "env": {"GREETING": "hello"}}
    assert describe_change(old, new) == "command, env.GREETING"
    assert describe_change(old, {**old, "replicas": 9}) == "no change"
    assert describe_change(None, old) == "initial"
    many = {**old, "env": {f"VAR_{i:02d}": "x" for i in range(30)}, "image": "i" * 100}
    text = describe_change(old, many)
    assert len(text) <= 60 and text.startswith("image=") and text.endswith("more")


def test_parse_constraint() -> None:
    c = parse_constraint("node.labels.zone == 'a'")
    assert c == Constraint("zone", True, "a") and c.attribute == "node.labels.zone" and c.op == "=="
    assert c.matches("n1", {"zone": "a"}) and not c.matches("n1", {"zone": "b"}) and not c.matches("n1", {})
    n = parse_constraint("node.name!=n3")
    assert n.label is None and n.matches("n1", {}) and not n.matches("n3", {})
    for bad in ["zone == a", "node.name =! a", "node.name ==", "node.labels. == a", "node.name == a b"]:
        with pytest.raises(ValueError):
            parse_constraint(bad)


# -- property: spec_dict → model_validate ---------------------------------------------------------------

names = st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True)
durations = st.one_of(
    st.integers(0, 10_000).map(lambda ms: f"{ms}ms"),
    st.integers(0, 600).map(lambda s: f"{s}s"),
    st.floats(0, 1e6, allow_nan=False),
)
ports = st.integers(1, 65535)


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    container_ports = draw(st.lists(ports, max_size=3, unique=True))
    spec: dict[str, Any] = {
        "image": draw(st.from_regex(r"[a-z0-9./:-]{1,30}", fullmatch=True)),
        "command": draw(st.none() | st.lists(st.text(max_size=10), max_size=4)),
        "env": draw(
            st.dictionaries(
                st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True),
                st.text(max_size=10) | st.integers() | st.booleans(),
                max_size=4,
            )
        ),
        "replicas": draw(st.integers(0, 50)),
        "network": draw(st.sampled_from(["bridge", "host"])),
        "ports": [{"container": p, "expose": draw(st.none() | ports)} for p in container_ports],
        "resources": {
            "cpu": draw(st.integers(0, 8000).map(lambda m: f"{m}m") | st.floats(0, 64, allow_nan=False)),
            "memory": draw(st.integers(0, 2**40) | st.integers(1, 1024).map(lambda n: f"{n}Mi")),
        },
        "restart": draw(st.sampled_from(["always", "on-failure", "never"])),
        "stop_grace": draw(durations),
        "update": {
            "max_surge": draw(st.integers(1, 5) | st.integers(1, 100).map(lambda p: f"{p}%")),
            "max_unavailable": draw(st.integers(0, 5)),
            "min_ready": draw(durations),
        },
        "placement": {
            "constraints": draw(st.lists(names.map(lambda n: f"node.labels.{n} == {n}"), max_size=2)),
            "spread": draw(st.none() | st.just("node.name")),
        },
    }
    # expose ports must be unique too
    exposes = [p["expose"] for p in spec["ports"] if p["expose"] is not None]
    if len(set(exposes)) != len(exposes):
        for p in spec["ports"]:
            p["expose"] = None
    if container_ports and draw(st.booleans()):
        spec["health"] = {
            "tcp": {"port": container_ports[0]},
            "interval": draw(st.integers(1, 60).map(lambda n: f"{n}s")),
        }
    if draw(st.booleans()):
        low = draw(st.integers(0, 5))
        spec["autoscale"] = {"min": low, "max": draw(st.integers(max(low, 1), 20)), "cpu_percent": 70}
    return spec


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=60)
@given(specs())
def test_spec_dict_model_validate_round_trip(raw: dict[str, Any]) -> None:
    spec = ServiceSpec.model_validate(raw)
    d = spec.model_dump(mode="json")
    again = ServiceSpec.model_validate(json.loads(json.dumps(d)))
    assert again == spec
    assert again.model_dump(mode="json") == d
    assert spec_hash(d) == spec_hash(raw)
