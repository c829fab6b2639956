"""Where client commands find their cluster: flag > env > context file > default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drover.cli.context import DEFAULT_NATS, load_context, normalize_url, resolve, write_context


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DROVER_HOME", str(tmp_path))
    monkeypatch.delenv("DROVER_NATS", raising=False)
    monkeypatch.delenv("DROVER_CLUSTER", raising=False)
    return tmp_path


def test_defaults_without_anything() -> None:
    t = resolve()
    assert (t.nats, t.cluster, t.nats_from) == (DEFAULT_NATS, "default", "default")


def test_context_file(home: Path) -> None:
    (home / "context.json").write_text(json.dumps({"nats": "nats://127.0.0.1:5555", "cluster": "lab"}))
    t = resolve()
    assert (t.nats, t.cluster, t.nats_from) == ("nats://127.0.0.1:5555", "lab", "context")


def test_context_cluster_is_optional(home: Path) -> None:
    (home / "context.json").write_text(json.dumps({"nats": "nats://127.0.0.1:5555"}))
    assert resolve().cluster == "default"


def test_env_beats_context(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "context.json").write_text(json.dumps({"nats": "nats://127.0.0.1:5555", "cluster": "lab"}))
    monkeypatch.setenv("DROVER_NATS", "nats://10.0.0.1:4222")
    monkeypatch.setenv("DROVER_CLUSTER", "prod")
    t = resolve()
    assert (t.nats, t.cluster, t.nats_from) == ("nats://10.0.0.1:4222", "prod", "env")


def test_flag_beats_env(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DROVER_NATS", "nats://10.0.0.1:4222")
    monkeypatch.setenv("DROVER_CLUSTER", "prod")
    t = resolve("nats://10.0.0.2:4222", "dev")
    assert (t.nats, t.cluster, t.nats_from) == ("nats://10.0.0.2:4222", "dev", "flag")


def test_broken_context_file_is_ignored(home: Path) -> None:
    (home / "context.json").write_text("{not json")
    assert load_context() == {}
    assert resolve().nats == DEFAULT_NATS


def test_write_context_round_trip(home: Path) -> None:
    path = write_context("nats://127.0.0.1:4300", "c1")
    assert path == home / "context.json"
    assert json.loads(path.read_text()) == {"nats": "nats://127.0.0.1:4300", "cluster": "c1"}
    t = resolve()
    assert (t.nats, t.cluster) == ("nats://127.0.0.1:4300", "c1")


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("nats://h:1", "nats://h:1"),
        ("127.0.0.1:4300", "nats://127.0.0.1:4300"),
        ("somehost", "nats://somehost:4222"),
        ("tls://h:1", "tls://h:1"),
    ],
)
def test_normalize_url(given: str, url: str) -> None:
    assert normalize_url(given) == url


def test_client_target_lists_every_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DROVER_HOME", str(tmp_path))
    monkeypatch.setenv("DROVER_NATS", "nats://a:4222,nats://b:4222")
    t = resolve()
    assert t.nats == "nats://a:4222,nats://b:4222" and t.servers == ["nats://a:4222", "nats://b:4222"]
    assert resolve("x:1,y").servers == ["nats://x:1", "nats://y:4222"]
