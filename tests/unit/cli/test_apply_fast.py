"""`drover apply` without the schema library on its way: documents that read and convert cleanly go to the
controller, which checks all of them before it stores any; the CLI checks them itself (the same lines as
ever, exit 2) only when the controller refuses them or cannot be reached."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import pytest

from drover.cli.commands_apply import unchecked_documents
from drover.shared import wire
from drover.shared.models import ApiReply
from tests.fixtures.nats import NatsServer
from tests.unit.cli.test_commands import BAD, GOOD, FakeNats, fake, isolated, run  # noqa: F401 (fixtures)
from tests.unit.cli.test_fast_cli import HEAVY, PROBE

COMPOSE = """\
services:
  api:
    image: local/busybox:latest
    ports: ["8080:80"]
    deploy: {replicas: 2}
"""


def test_unchecked_documents_of_native_and_compose_files() -> None:
    docs, where = unchecked_documents([("w.yaml", GOOD), ("c.yaml", COMPOSE)]) or ([], [])
    assert where == ["w.yaml[doc 1]", "w.yaml[doc 2]", "c.yaml[doc 1]"]
    assert [d["metadata"]["name"] for d in docs] == ["web", "worker", "api"]
    assert docs[0]["spec"]["ports"] == [{"name": "http", "container": 8080}]  # as written: not checked yet


@pytest.mark.parametrize(
    "text",
    [
        "apiVersion: drover/v1\nkind: [Service\n",  # YAML error
        "",  # no document
        "services:\n  api: {image: x, privileged: true}\n",  # a Compose field drover cannot honour
        "apiVersion: drover/v1\nkind: Service\nmetadata: {name: w}\nspec: {image: x, when: 2024-01-01}\n",
        "apiVersion: drover/v1\nkind: Service\nmetadata: {name: w}\nspec: {image: x, 1: a}\n",
        "apiVersion: drover/v1\nkind: Service\nmetadata: {name: w}\nspec: {image: x, replicas: 99999999999999999999}\n",
        "apiVersion: drover/v1\nkind: Service\nmetadata: {name: w}\nspec: {image: x, replicas: .inf}\n",
        "apiVersion: drover/v1\nkind: Service\nmetadata: {name: w}\nspec: {image: !!binary aGk=}\n",
        "- a list\n",
    ],
)
def test_what_the_schema_must_answer_first(text: str) -> None:
    assert unchecked_documents([("w.yaml", text)]) is None


def test_apply_sends_the_documents_as_written(tmp_path: Path, fake: Callable[..., FakeNats]) -> None:  # noqa: F811
    nc = fake(apply=lambda b: {"results": [{"name": m["metadata"]["name"], "action": "created"}
                                           for m in b["manifests"]]})
    f = tmp_path / "w.yaml"
    f.write_text(GOOD)
    result = run("apply", "-f", str(f))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["service/web created", "service/worker created"]
    body = nc.requests[0][1]
    assert body["sources"] == [f"{f}[doc 1]", f"{f}[doc 2]"]
    assert body["manifests"][1] == {"apiVersion": "drover/v1", "kind": "Service", "metadata": {"name": "worker"},
                                    "spec": {"image": "local/busybox:latest"}}


@pytest.mark.parametrize(
    ("text", "where", "line"),
    [
        # refused documents: the local check's lines (FILE[doc N] …), not the controller's "request[doc N]"
        (BAD, "request[doc 1] spec.ports[0].container",
         "{f}[doc 1] spec.ports[0].container: must be an integer 1-65535"),
        # a problem only the controller sees (the local check passes): its own line
        (GOOD, "w.yaml[doc 1] spec.files[0].secret", "w.yaml[doc 1] spec.files[0].secret: no secret named db"),
    ],
)
def test_refused_documents(
    tmp_path: Path, fake: Callable[..., FakeNats], text: str, where: str, line: str  # noqa: F811
) -> None:
    message = line.rsplit(": ", 1)[1]
    fake(apply=lambda b: ApiReply(ok=False, code="invalid", error="invalid manifest",
                                  problems=[{"where": where, "message": message}]))
    f = tmp_path / "w.yaml"
    f.write_text(text)
    result = run("apply", "-f", str(f))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["error: " + line.format(f=f)]


async def test_apply_loads_neither_the_schema_library_nor_the_models(tmp_path: Path, nats_server: NatsServer) -> None:
    """A fresh `drover apply` against a real nats-server, answered by a stand-in controller."""
    f = tmp_path / "w.yaml"
    f.write_text(GOOD)
    nc = await nats.connect(nats_server.url)
    bodies: list[dict[str, Any]] = []

    async def answer(msg: Any) -> None:
        bodies.append(wire.decode(msg.data))
        await msg.respond(ApiReply(ok=True, data={"results": [{"name": "web", "action": "created"}]}).to_wire())

    await nc.subscribe("drover.default.api.apply", cb=answer)
    env = {**os.environ, "DROVER_HOME": str(tmp_path / "home"), "DROVER_NATS": nats_server.url}
    env.pop("DROVER_CLUSTER", None)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", PROBE, json.dumps([*HEAVY, "drover.shared.manifest"]), "apply", "-f", str(f),
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        await nc.close()
    assert proc.returncode == 0, (out, err)
    assert out.decode().splitlines() == ["service/web created"]
    assert len(bodies) == 1 and len(bodies[0]["manifests"]) == 2
    mods = json.loads(err.decode().rsplit("LOADED ", 1)[1])
    assert "pydantic" not in mods and "drover.shared.manifest" not in mods, mods
    assert "nats" not in mods and "yaml" in mods  # answered by the lean request path (cli/quickreq.py)

