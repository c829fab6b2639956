"""Named contexts (``drover context …``, ``--context``) and ``drover completion``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from drover.cli.context import resolve, write_context
from drover.cli.main import cli


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DROVER_HOME", str(tmp_path))
    for var in ("DROVER_NATS", "DROVER_CLUSTER", "DROVER_CONTEXT"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def drover(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.output


def test_add_does_not_switch_and_list_marks_the_current(home: Path) -> None:
    write_context("nats://127.0.0.1:4300", "up")
    assert drover("context", "add", "lab", "--nats", "10.0.0.9:4222,10.0.0.8", "--cluster", "lab") == (
        0,
        "context/lab added\n",
    )
    code, out = drover("context", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["CURRENT", "NAME", "NATS"]
    assert lines[1].split() == ["*", "default", "nats://127.0.0.1:4300"]
    assert lines[2].split() == ["lab", "nats://10.0.0.9:4222,nats://10.0.0.8:4222"]
    assert resolve().nats == "nats://127.0.0.1:4300"  # still the one drover up wrote


def test_use_switches_and_flag_and_env_override(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_context("nats://127.0.0.1:4300", "up")
    drover("context", "add", "lab", "--nats", "nats://127.0.0.1:4400", "--cluster", "lab")
    assert drover("context", "use", "lab") == (0, 'Switched to context "lab".\n')
    assert (resolve().nats, resolve().cluster) == ("nats://127.0.0.1:4400", "lab")
    assert drover("context", "current") == (0, "lab\n")
    assert [ln.split()[0] for ln in drover("context", "list")[1].splitlines()[1:]] == ["default", "*"]
    assert resolve(context_opt="default").nats == "nats://127.0.0.1:4300"
    monkeypatch.setenv("DROVER_CONTEXT", "default")
    assert resolve().nats == "nats://127.0.0.1:4300"
    monkeypatch.delenv("DROVER_CONTEXT")
    monkeypatch.setenv("DROVER_NATS", "nats://127.0.0.1:4500")
    assert resolve().nats == "nats://127.0.0.1:4500"  # env beats the current context …
    assert resolve(context_opt="lab").nats == "nats://127.0.0.1:4400"  # … an explicit --context beats env
    assert resolve("nats://127.0.0.1:4600", context_opt="lab").nats == "nats://127.0.0.1:4600"


def test_up_makes_default_current_again(home: Path) -> None:
    drover("context", "add", "lab", "--nats", "nats://127.0.0.1:4400")
    drover("context", "use", "lab")
    write_context("nats://127.0.0.1:4300", "default")
    assert resolve().nats == "nats://127.0.0.1:4300"


def test_delete_and_bad_input(home: Path, tmp_path: Path) -> None:
    creds = tmp_path / "admin.creds"
    creds.write_text("x")
    assert drover("context", "add", "lab", "--nats", "n:1", "--creds", str(creds))[0] == 0
    stored = json.loads((home / "contexts.json").read_text())
    assert stored["contexts"]["lab"]["creds"] == str(creds.resolve())
    drover("context", "use", "lab")
    assert drover("context", "delete", "lab") == (0, "context/lab deleted\n")
    assert resolve().nats == "nats://127.0.0.1:4222"  # back on default
    for args in (
        ("context", "use", "nope"),
        ("context", "delete", "nope"),
        ("context", "delete", "default"),
        ("context", "add", "default", "--nats", "n:1"),
        ("context", "add", "bad name", "--nats", "n:1"),
        ("context", "add", "x", "--nats", "n:1", "--ca", str(tmp_path / "missing.pem")),
        ("--context", "nope", "get", "services"),
    ):
        code, out = drover(*args)
        assert code == 2, (args, out)
        assert "Traceback" not in out


def _completion_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


def test_completion_scripts_load_and_complete_commands() -> None:
    for shell in ("bash", "zsh", "fish"):
        code, out = drover("completion", shell)
        assert code == 0 and "_DROVER_COMPLETE" in out, shell
    script = subprocess.run(
        [sys.executable, "-m", "drover", "completion", "bash"], capture_output=True, text=True, check=True
    ).stdout
    loaded = subprocess.run(
        ["bash", "-c", f"{script}\ncomplete -p drover"], capture_output=True, text=True, timeout=30
    )
    assert loaded.returncode == 0, loaded.stderr
    assert "_drover_completion" in loaded.stdout
    words = subprocess.run(
        [sys.executable, "-m", "drover"],
        env=_completion_env(_DROVER_COMPLETE="bash_complete", COMP_WORDS="drover con", COMP_CWORD="1"),
        capture_output=True, text=True, timeout=30,
    )
    assert "plain,context" in words.stdout.splitlines() and "plain,controller" in words.stdout.splitlines()


def test_context_names_complete(home: Path) -> None:
    drover("context", "add", "lab", "--nats", "n:1")
    r = subprocess.run(
        [sys.executable, "-m", "drover"],
        env=_completion_env(
            DROVER_HOME=str(home), _DROVER_COMPLETE="bash_complete", COMP_WORDS="drover get --context l", COMP_CWORD="3"
        ),
        capture_output=True, text=True, timeout=30,
    )
    assert r.stdout.split() == ["plain,lab"], r.stdout + r.stderr


def test_name_completion_without_a_cluster_is_quick_and_quiet(home: Path) -> None:
    start = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "drover"],
        env=_completion_env(
            DROVER_HOME=str(home),
            _DROVER_COMPLETE="bash_complete",
            COMP_WORDS="drover --nats nats://127.0.0.1:9 scale ",
            COMP_CWORD="4",
        ),
        capture_output=True, text=True, timeout=30,
    )
    assert time.monotonic() - start < 10
    assert r.returncode == 0
    assert r.stdout.strip() == "" and "Traceback" not in r.stderr


EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_convert_prints_native_manifests_that_round_trip(tmp_path: Path) -> None:
    import yaml

    from drover.shared.manifest import parse_manifests

    code, out = drover("convert", "-f", str(EXAMPLES / "k8s-web.yaml"), "-f", str(EXAMPLES / "compose.yaml"))
    assert code == 0, out
    docs = list(yaml.safe_load_all(out))
    assert [d["metadata"]["name"] for d in docs] == ["web", "shop", "cache"]
    assert all(d["apiVersion"] == "drover/v1" and d["kind"] == "Service" for d in docs)
    assert docs[0]["spec"]["ports"] == [{"container": 8080, "name": "http", "expose": 18080}]
    native = tmp_path / "native.yaml"
    native.write_text(out)
    again = parse_manifests([(str(native), out)])
    original = parse_manifests([(n, (EXAMPLES / n).read_text()) for n in ("k8s-web.yaml", "compose.yaml")])
    assert [m.spec_dict() for m in again] == [m.spec_dict() for m in original]


def test_convert_unsupported_field_is_exit_2_naming_it(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("services:\n  web:\n    image: x\n    privileged: true\n")
    code, out = drover("convert", "-f", str(f))
    assert code == 2
    assert f"error: {f}[doc 1] services.web.privileged: not supported by drover" in out
