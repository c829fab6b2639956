"""``drover up`` keeps the cluster's CA and keys but issues its daemons' credentials afresh on every start, so a
credentials file left by an older drover (with that version's permissions) never locks its daemons out."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from drover.cli.up import UpSecurity
from drover.shared.security import SecurityDir


def _jwt_claims(creds: Path) -> dict[str, object]:
    lines = creds.read_text().splitlines()
    token = lines[lines.index(next(x for x in lines if "BEGIN NATS USER JWT" in x)) + 1]
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))  # type: ignore[no-any-return]


def test_role_credentials_are_reissued_once_per_start(tmp_path: Path) -> None:
    sec = SecurityDir(tmp_path / "security").ensure(["127.0.0.1"])
    stale = sec.path / "controller-c1.creds"
    stale.write_text("credentials of an older drover\n")

    first = UpSecurity(sec=sec, cluster="c1", nats_config=tmp_path / "nats.conf")
    path = Path(first.controller)
    assert path == stale
    claims = _jwt_claims(path)
    assert "$KV.drover_c1_secrets.>" in json.dumps(claims)  # this version's controller rights
    text = path.read_text()
    assert first.controller == str(path) and path.read_text() == text  # once per start, not per call

    agent = Path(first.agent_creds("n1"))
    assert "drover.c1.secrets.n1" in json.dumps(_jwt_claims(agent))
