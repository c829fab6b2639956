"""``drover apply`` on malformed and odd manifests: exit 0, 1 or 2 and never a traceback.

The fake controller validates what it receives with the real server-side check (``parse_request``), so
the CLI's validation and the controller's are exercised together. Bounded: well under 30 s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drover.cli import client as client_mod
from drover.cli import quickreq
from drover.cli.main import cli
from drover.shared import wire
from drover.shared.manifest import ManifestError, parse_request
from drover.shared.models import ApiReply
from tests.unit.cli.fakebus import InboxFromRequest


class _Msg:
    def __init__(self, data: bytes):
        self.data = data


class ValidatingController(InboxFromRequest):
    """Answers ``apply`` as the real controller's API does: ``parse_request`` first."""

    max_payload = 1024 * 1024

    def __init__(self) -> None:
        self.applied = 0

    async def request(self, subject: str, data: bytes, timeout: float = 1.0) -> _Msg:
        body = wire.decode(data)
        try:
            manifests = parse_request(body["manifests"])
        except ManifestError as exc:
            problems = [{"where": w, "message": m} for w, m in exc.problems]
            reply = ApiReply(ok=False, code="invalid", error="invalid manifest", problems=problems)
        else:
            self.applied += 1
            reply = ApiReply(ok=True, data={"results": [{"name": m.name, "action": "created"} for m in manifests]})
        return _Msg(reply.to_wire())

    async def close(self) -> None:
        return None


@pytest.fixture
def controller(monkeypatch: pytest.MonkeyPatch) -> ValidatingController:
    nc = ValidatingController()

    async def connect(*_: Any, **__: Any) -> ValidatingController:
        return nc

    monkeypatch.setattr(client_mod, "connect", connect)
    monkeypatch.setattr(quickreq, "ENABLED", False)  # the fake is behind the full client, not on a socket
    return nc


def apply(text: str | bytes, *args: str) -> Result:
    return CliRunner().invoke(cli, ["apply", *args, "-f", "-"], input=text)


def assert_clean(result: Result, allowed: tuple[int, ...] = (0, 1, 2)) -> None:
    out = result.stdout + result.stderr
    assert result.exit_code in allowed, (result.exit_code, out[-2000:], result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in out


BASE: dict[str, Any] = {
    "apiVersion": "drover/v1",
    "kind": "Service",
    "metadata": {"name": "web"},
    "spec": {"image": "local/busybox:latest", "replicas": 2, "ports": [{"container": 8080}]},
}
FIELDS = [
    ("spec", "replicas"), ("spec", "stop_grace"), ("spec", "image"), ("spec", "command"), ("spec", "env"),
    ("spec", "ports"), ("spec", "resources"), ("spec", "health"), ("spec", "update"), ("spec", "autoscale"),
    ("spec", "placement"), ("spec", "network"), ("spec", "restart"), ("metadata", "name"), ("metadata", "labels"),
    ("spec", "volumes"), ("spec", "files"), ("spec",), ("metadata",), ("kind",), ("apiVersion",),
]
odd_scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.booleans(),
    st.none(),
    st.text(max_size=20),
    st.sampled_from(["1e9999999s", "1e9999999Ki", "-1", "250m", "64Mi", "2s", "node.labels.zone == a b",
                     "web!canary", "x=y", "node.name == 'a b'", "%", "100%", "*", "&", "\x00", "é" * 10,
                     "apps/v1", "v1", "Deployment", "Service", "batch/v1", "CronJob"]),
)
odd_values = st.recursive(
    odd_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
SPEC_SHAPES = st.fixed_dictionaries(
    {},
    optional={
        "placement": st.fixed_dictionaries({}, optional={"constraints": st.lists(odd_scalars, max_size=3),
                                                          "spread": odd_scalars}),
        "resources": st.fixed_dictionaries({}, optional={"cpu": odd_scalars, "memory": odd_scalars}),
        "update": st.fixed_dictionaries({}, optional={"max_surge": odd_scalars, "min_ready": odd_scalars}),
        "autoscale": st.fixed_dictionaries({}, optional={"max": odd_scalars, "cpu_percent": odd_scalars}),
    },
)


DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "local/busybox:latest"}]}}},
}
COMPOSE: dict[str, Any] = {"services": {"web": {"image": "local/busybox:latest", "ports": ["8080:80"]}}}


@st.composite
def manifests(draw: st.DrawFn) -> str:
    # mostly drover's own kind; now and then a Kubernetes or Compose document (converted by apply)
    template = draw(st.sampled_from([BASE, BASE, BASE, DEPLOYMENT, COMPOSE]))
    doc = json.loads(json.dumps(template))
    if template is BASE:
        doc["spec"].update(draw(SPEC_SHAPES))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(FIELDS))
        target = doc
        for key in path[:-1]:
            target = target.setdefault(key, {}) if isinstance(target, dict) else {}
        if isinstance(target, dict):
            target[path[-1]] = draw(odd_values)
    as_json = draw(st.booleans())
    text = json.dumps(doc) if as_json else yaml.safe_dump(doc, allow_unicode=True)
    cut = draw(st.integers(0, 3))
    if cut == 0:  # damage the text itself now and then
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(max_size=5)) + text[at:]
    return text


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(manifests())
def test_apply_fuzz_exit_codes(controller: ValidatingController, text: str) -> None:
    result = apply(text)
    assert_clean(result)
    if result.exit_code == 0:
        assert result.stdout.startswith("service/")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_apply_fuzz_any_bytes(controller: ValidatingController, data: str | bytes) -> None:
    assert_clean(apply(data), allowed=(2,))


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("spec:\n  stop_grace: 1e9999999s\n", "spec.stop_grace: is too large"),
        ("spec:\n  resources: {memory: 1e9999999Ki}\n", "spec.resources.memory: is too large"),
        ("spec:\n  replicas: 18446744073709551616\n", "spec.replicas: must be an integer <= 10000"),
        ("spec:\n  placement: {constraints: ['node.labels.zone == a b']}\n", "a value with spaces must be quoted"),
        ("spec:\n  placement: {constraints: ['web!canary', 'x=y']}\n", "unknown attribute 'web'"),
        ("spec:\n  command: " + "[" * 2000 + "]" * 2000 + "\n", "<stdin>: invalid YAML"),
    ],
)
def test_issue_reproductions_exit_2_with_a_field_path(
    controller: ValidatingController, text: str, expect: str
) -> None:
    full = "apiVersion: drover/v1\nkind: Service\nmetadata: {name: web}\n" + text.replace(
        "spec:\n", "spec:\n  image: local/busybox:latest\n"
    )
    result = apply(full)
    assert_clean(result, allowed=(2,))
    assert expect in result.stderr and controller.applied == 0
    if "spec." in expect:
        assert result.stderr.startswith("error: <stdin>[doc 1] spec.")


def test_stdin_larger_than_one_mib(controller: ValidatingController) -> None:
    result = apply("#" * (2 * 1024 * 1024))
    assert_clean(result, allowed=(2,))
    assert result.stderr == "error: <stdin>: is larger than 1 MiB (the limit is 1,048,576 bytes)\n"


def test_delete_f_is_bounded_too(controller: ValidatingController, tmp_path: Path) -> None:
    f = tmp_path / "big.yaml"
    f.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    result = CliRunner().invoke(cli, ["delete", "-f", str(f)])
    assert_clean(result, allowed=(2,))
    assert result.stderr.startswith(f"error: {f}: invalid YAML")


def test_expanded_request_over_the_server_limit_is_exit_2(controller: ValidatingController) -> None:
    # one YAML list of 40 services sharing a 30 KB value through an alias: a 35 KB file, each spec within
    # its limit, 1.2 MB of values in all: more than one NATS message holds
    def item(i: int, value: str) -> str:
        return (f"- {{apiVersion: drover/v1, kind: Service, metadata: {{name: s{i}}}, "
                f"spec: {{image: local/busybox:latest, env: {{A: {value}}}}}}}\n")

    text = item(0, '&x "' + "x" * 30_000 + '"') + "".join(item(i, "*x") for i in range(1, 40))
    result = apply(text)
    assert_clean(result, allowed=(2,))
    assert "more than the server accepts (1,048,576 bytes)" in result.stderr and controller.applied == 0


def test_valid_manifest_is_applied(controller: ValidatingController) -> None:
    result = apply(json.dumps(BASE))
    assert result.exit_code == 0 and result.stdout == "service/web created\n"
    assert controller.applied == 1


