"""Pull policy and registry credentials from the agent host's Docker config (never from a manifest)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from drover.agent.drivers.pull import credentials, policy, registry_of
from drover.shared.models import spec_of


def test_registry_of() -> None:
    assert registry_of("busybox") == "docker.io"
    assert registry_of("library/busybox:1") == "docker.io"
    assert registry_of("local/busybox:latest") == "docker.io"
    assert registry_of("ghcr.io/org/app:1") == "ghcr.io"
    assert registry_of("127.0.0.1:5000/app") == "127.0.0.1:5000"
    assert registry_of("localhost/app") == "localhost"


def test_policy_defaults_to_if_missing() -> None:
    assert policy(spec_of({"image": "i"})) == "if-missing"
    assert policy(spec_of({"image": "i", "pull": "always"})) == "always"


def test_credentials_from_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"auths": {
        "ghcr.io": {"auth": base64.b64encode(b"me:s3cret").decode()},
        "https://index.docker.io/v1/": {"username": "hub", "password": "pw"},
    }}))
    assert credentials("ghcr.io/org/app:1", cfg) == {"username": "me", "password": "s3cret", "serveraddress": "ghcr.io"}
    assert credentials("busybox", cfg) == {"username": "hub", "password": "pw",
                                           "serveraddress": "https://index.docker.io/v1/"}
    assert credentials("quay.io/x", cfg) is None
    assert credentials("busybox", tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{")
    assert credentials("busybox", tmp_path / "bad.json") is None
