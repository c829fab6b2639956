"""Bounded manifest loading: size, nesting, alias expansion, huge numbers — problems, never exceptions."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from drover.shared.limits import MAX_ITEMS, MAX_MANIFEST_BYTES, MAX_NESTING, MAX_REPLICAS
from drover.shared.manifest import ManifestError, parse_manifests, parse_request
from drover.shared.manifest_load import check_data, load_documents

HEAD = "apiVersion: drover/v1\nkind: Service\nmetadata: {name: web}\nspec:\n  image: local/busybox:latest\n"


def problems(text: str, source: str = "web.yaml") -> list[str]:
    with pytest.raises(ManifestError) as info:
        parse_manifests([(source, text)])
    return info.value.lines()


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        ("  stop_grace: 1e9999999s\n", "web.yaml[doc 1] spec.stop_grace: is too large"),
        ("  stop_grace: 400d\n", "web.yaml[doc 1] spec.stop_grace: must be a duration like 500ms, 2s or 1m"),
        ("  stop_grace: 9000h\n", "web.yaml[doc 1] spec.stop_grace: must be at most 8760h"),
        ("  stop_grace: .inf\n", "web.yaml[doc 1] spec.stop_grace: must be a duration like 500ms, 2s or 1m"),
        ("  resources: {memory: 1e9999999Ki}\n", "web.yaml[doc 1] spec.resources.memory: is too large"),
        ("  resources: {memory: -1Mi}\n", "web.yaml[doc 1] spec.resources.memory: must not be negative"),
        ("  resources: {cpu: .nan}\n", "web.yaml[doc 1] spec.resources.cpu: must be a CPU amount like 0.25, 1 or 250m"),
        ("  replicas: 18446744073709551616\n", f"web.yaml[doc 1] spec.replicas: must be an integer <= {MAX_REPLICAS}"),
        ("  replicas: 10001\n", f"web.yaml[doc 1] spec.replicas: must be an integer <= {MAX_REPLICAS}"),
        ("  replicas: -1\n", "web.yaml[doc 1] spec.replicas: must be an integer >= 0"),
        ("  replicas: .nan\n", "web.yaml[doc 1] spec.replicas: must be an integer"),
        ("  replicas: 1" + "0" * 5000 + "\n", "web.yaml: invalid YAML: a number has more than 4300 digits"),
        ("  autoscale: {max: 99999999999999999999}\n",
         "web.yaml[doc 1] spec.autoscale.max: must be an integer <= 10000"),
        ("  autoscale: {cpu_percent: .inf}\n", "web.yaml[doc 1] spec.autoscale.cpu_percent: must be a number"),
        ("  health: {exec: {command: [x]}, failure_threshold: 18446744073709551616}\n",
         "web.yaml[doc 1] spec.health.failure_threshold: must be an integer <= 10000"),
        ("  update: {max_surge: 18446744073709551616}\n",
         "web.yaml[doc 1] spec.update.max_surge: must be an integer 0-10000 or a percentage like 25%"),
    ],
)
def test_numbers_are_parsed_safely(extra: str, line: str) -> None:
    assert problems(HEAD + extra) == [line]


def test_limits_on_replicas_and_ports_are_inclusive() -> None:
    ports = "".join(f"    - {{container: {p}}}\n" for p in range(1, MAX_ITEMS + 1))
    [m] = parse_manifests([("w.yaml", HEAD + f"  replicas: {MAX_REPLICAS}\n  ports:\n" + ports)])
    assert m.spec.replicas == MAX_REPLICAS and len(m.spec.ports) == MAX_ITEMS
    more = ports + f"    - {{container: {MAX_ITEMS + 1}}}\n"
    assert problems(HEAD + "  ports:\n" + more) == [f"web.yaml[doc 1] spec.ports: must have at most {MAX_ITEMS} items"]


def test_file_larger_than_one_mib() -> None:
    text = HEAD + "  command: [" + '"' + "x" * MAX_MANIFEST_BYTES + '"]\n'
    assert problems(text) == ["web.yaml: is larger than 1 MiB (the limit is 1,048,576 bytes)"]
    # bytes, not characters: 600 Ki two-byte characters are 1.2 MiB
    assert problems(HEAD + "  env: {A: " + "é" * (600 * 1024) + "}\n")[0].startswith("web.yaml: is larger than 1 MiB")


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 2000, 100_000])
def test_deep_nesting(depth: int) -> None:
    [line] = problems(HEAD + "  command: " + "[" * depth + "]" * depth + "\n")
    assert line.startswith("web.yaml: ") and ("nested more than" in line or "nesting depth" in line), line
    block = "".join("  " * (i + 1) + "a:\n" for i in range(depth if depth < 2000 else 2000))
    [line] = problems(HEAD + "  env:\n" + block)
    assert line.startswith("web.yaml: ")


def test_billion_laughs_is_refused_quickly() -> None:
    lines = [HEAD.rstrip("\n"), '  x0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"  x{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    start = time.perf_counter()
    [line] = problems("\n".join(lines) + "\n")
    assert time.perf_counter() - start < 5
    assert line.startswith("web.yaml: too complex at line ") and "once aliases are expanded" in line


def test_aliases_of_a_long_string_count_by_size() -> None:
    text = HEAD + '  env: {A: &x "' + "x" * 10_000 + '"}\n  command: [' + ",".join(["*x"] * 300) + "]\n"
    [line] = problems(text)
    assert "more than 2 MiB of values once aliases are expanded" in line


def test_small_aliases_and_merge_keys_still_work() -> None:
    text = HEAD + "  env: &e {A: '1'}\n  update: {min_ready: 1s}\n"
    [m] = parse_manifests([("w.yaml", text)])
    assert m.spec.env == {"A": "1"}
    docs = load_documents("base: &b {x: 1}\nother: {<<: *b, y: 2}\n", "f")
    assert docs == [(1, {"base": {"x": 1}, "other": {"x": 1, "y": 2}})]


def test_recursive_alias_is_refused() -> None:
    [line] = problems("a: &a [*a]\n")
    assert line.startswith("web.yaml: too complex at line 1") and "no complete anchor" in line


def test_check_data_bounds_decoded_requests() -> None:
    deep: Any = "x"
    for _ in range(100_000):  # far deeper than the recursion limit: checked without recursion
        deep = [deep]
    assert check_data(deep) == f"nested more than {MAX_NESTING} levels deep"
    assert check_data({"a": list(range(10))}) is None
    assert check_data(list(range(1_000_001))) is not None


def doc(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "drover/v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"image": "local/busybox:latest", **spec}}


def test_parse_request_enforces_the_same_limits() -> None:
    deep: Any = "x"
    for _ in range(200):
        deep = [deep]
    with pytest.raises(ManifestError) as info:
        parse_request([doc(replicas=2**64), doc(command=deep), doc(ports=[{"container": 1}] * 101)])
    assert info.value.lines() == [
        "request[doc 1] spec.replicas: must be an integer <= 10000",
        f"request[doc 2]: too complex: nested more than {MAX_NESTING} levels deep",
        "request[doc 3] spec.ports: must have at most 100 items",
    ]
    [m] = parse_request([json.loads(json.dumps(doc(replicas=3)))])
    assert m.spec.replicas == 3


def test_huge_strings_are_refused_with_a_path() -> None:
    assert problems(HEAD.replace("local/busybox:latest", "x" * 2000)) == [
        "web.yaml[doc 1] spec.image: must be at most 1024 characters"
    ]
    # whatever a manifest file within its 1 MiB limit says fits a spec (drover's servers take 8 MiB messages)
    [m] = parse_manifests([("w.yaml", HEAD + "  env: {A: " + "x" * (MAX_MANIFEST_BYTES - 200) + "}\n")])
    assert len(m.spec.env["A"]) == MAX_MANIFEST_BYTES - 200
    # beyond that (only a request built by hand can say more), the spec itself is refused with its size
    with pytest.raises(ManifestError) as info:
        parse_request([doc(env={"A": "x" * 2_200_000})])
    assert info.value.lines() == [
        "request[doc 1] spec: is 2148 KiB once encoded, more than 2048 KiB (large files belong in a volume)"
    ]
