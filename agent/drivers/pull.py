"""Image pulls for the docker driver: the spec's ``pull`` policy and the agent host's registry credentials.

Credentials come only from the host's Docker config (``~/.docker/config.json``, ``$DOCKER_CONFIG``, or the
agent's ``--docker-config FILE``), never from a manifest: ``auths.<registry>.auth`` (base64 ``user:password``)
or ``username``/``password``. Credential helpers (``credsStore``) are not run.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

from drover.shared.manifest import ServiceSpec

DEFAULT_REGISTRY = "docker.io"
_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


def policy(spec: ServiceSpec) -> str:
    return spec.pull


def registry_of(image: str) -> str:
    """The registry host of an image reference (``docker.io`` when it names none)."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return DEFAULT_REGISTRY


def default_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return (Path(base) if base else Path.home() / ".docker") / "config.json"


def credentials(image: str, config_path: Path | None) -> dict[str, str] | None:
    """``{"username", "password", "serveraddress"}`` for the image's registry from a Docker config, or None."""
    path = config_path or default_config_path()
    try:
        auths = json.loads(path.read_text(encoding="utf-8")).get("auths") or {}
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(auths, dict):
        return None
    registry = registry_of(image)
    keys = _DOCKER_HUB_KEYS if registry == DEFAULT_REGISTRY else (registry, f"https://{registry}",
                                                                   f"https://{registry}/v1/", f"https://{registry}/v2/")
    for key in keys:
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        user, password = entry.get("username"), entry.get("password")
        if isinstance(entry.get("auth"), str):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                continue
        if isinstance(user, str) and isinstance(password, str) and user:
            return {"username": user, "password": password, "serveraddress": key}
    return None
