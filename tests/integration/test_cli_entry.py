"""The ``drover`` console script's fast ``apply -f`` (``drover.cli.entry``): which lines take it, and that it
prints the same lines with the same exit codes as the click command (``drover.cli.main``), side by side, in
fresh processes against a real nats-server (a stand-in controller answering, or none)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from drover.cli.entry import fast_apply_files
from drover.shared import wire
from drover.shared.models import ApiReply
from drover.shared.subjects import Names
from tests.fixtures import NatsServer
from tests.unit.cli.test_commands import BAD, GOOD

# Prints, at exit, whether click was loaded; runs either entry point with the same arguments.
PROBE = """
import atexit, sys
atexit.register(lambda: sys.stderr.write("\\nCLICK " + str("click" in sys.modules) + "\\n"))
which = sys.argv[1]
if which == "entry":
    from drover.cli.entry import main
else:
    from drover.cli.main import main
main(sys.argv[2:])
"""


@pytest.mark.parametrize(
    ("args", "files"),
    [
        (["apply", "-f", "w.yaml"], ("w.yaml",)),
        (["apply", "--filename", "a.yaml", "-f", "-", "-f", "dir"], ("a.yaml", "-", "dir")),
        (["apply"], None),
        (["apply", "-f"], None),
        (["apply", "-f", "w.yaml", "--dry-run"], None),
        (["apply", "-f", "w.yaml", "--nats", "nats://x:1"], None),
        (["apply", "-f", "--help"], None),  # a file name like an option: click decides
        (["apply", "-fw.yaml"], None),
        (["apply", "--filename=w.yaml"], None),
        (["apply", "-f", ""], None),
        (["--nats", "nats://x:1", "apply", "-f", "w.yaml"], None),
        (["get", "-f", "w.yaml"], None),
        (["delete", "-f", "w.yaml"], None),
    ],
)
def test_which_lines_take_the_fast_path(args: list[str], files: tuple[str, ...] | None) -> None:
    assert fast_apply_files(args) == files


async def run(which: str, tmp_path: Path, url: str, cluster: str, *args: str, stdin: bytes = b"",
              env: dict[str, str] | None = None) -> tuple[int, str, str, bool]:
    """(exit code, stdout, stderr, click loaded) of ``drover <args>`` through ``which`` entry point."""
    full = {**os.environ, "DROVER_HOME": str(tmp_path / "home"), "DROVER_NATS": url, "DROVER_CLUSTER": cluster,
            **(env or {})}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PROBE, which, *args, env=full, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    text, _, loaded = err.decode().rpartition("\nCLICK ")
    return proc.returncode or 0, out.decode(), text, loaded.strip() == "True"


async def both(tmp_path: Path, url: str, cluster: str, *args: str, **kw: object) -> tuple[int, str, str]:
    """Run the fast entry and the click command; they must agree exactly, and only the click one loads click."""
    fast = await run("entry", tmp_path, url, cluster, *args, **kw)  # type: ignore[arg-type]
    slow = await run("click", tmp_path, url, cluster, *args, **kw)  # type: ignore[arg-type]
    assert fast[:3] == slow[:3]
    assert (fast[3], slow[3]) == (False, True)
    return fast[:3]


@pytest.fixture
async def controller(nats_server: NatsServer, cluster_name: str) -> AsyncIterator[Callable[[], list[Msg]]]:
    """A stand-in controller: 'created' for each manifest; refused (invalid) when one is named 'refused' or
    publishes a port over 65535."""
    nc: NATS = await nats.connect(nats_server.url)
    seen: list[Msg] = []

    async def answer(msg: Msg) -> None:
        seen.append(msg)
        body = wire.decode(msg.data)
        names = [m.get("metadata", {}).get("name") for m in body["manifests"]]
        ports = [p.get("container", 0) for m in body["manifests"] for p in m.get("spec", {}).get("ports", [])]
        if "refused" in names or any(p > 65535 for p in ports):
            reply = ApiReply(ok=False, error="no", code="invalid",
                             problems=[{"where": "request[doc 1] spec.image", "message": "refused here"}])
        else:
            reply = ApiReply(ok=True, data={"results": [{"name": n, "action": "created"} for n in names]})
        await msg.respond(reply.to_wire())

    await nc.subscribe(Names(cluster_name).api("apply"), cb=answer)
    await nc.flush()
    yield lambda: seen
    await nc.close()


async def test_fast_apply_prints_and_exits_as_the_click_command(
    tmp_path: Path, nats_server: NatsServer, cluster_name: str, controller: Callable[[], list[Msg]]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    url = nats_server.url
    assert await both(tmp_path, url, cluster_name, "apply", "-f", str(good)) == (
        0, "service/web created\nservice/worker created\n", "")
    # stdin, and two files
    code, out, _ = await both(tmp_path, url, cluster_name, "apply", "-f", "-", "--filename", str(good),
                              stdin=GOOD.encode())
    assert code == 0 and out.count("created") == 4
    # refused by the controller: the controller's line (the local check passes), exit 2
    refused = tmp_path / "refused.yaml"
    refused.write_text("apiVersion: drover/v1\nkind: Service\nmetadata: {name: refused}\nspec: {image: x}\n")
    assert await both(tmp_path, url, cluster_name, "apply", "-f", str(refused)) == (
        2, "", "error: request[doc 1] spec.image: refused here\n")
    # invalid locally: the local check's lines, exit 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    code, out, err = await both(tmp_path, url, cluster_name, "apply", "-f", str(bad))
    assert (code, out) == (2, "") and err.startswith(f"error: {bad}[doc 1] spec.ports[0].container")
    # a missing file, a bad cluster name
    assert await both(tmp_path, url, cluster_name, "apply", "-f", str(tmp_path / "nope.yaml")) == (
        2, "", f"error: {tmp_path / 'nope.yaml'}: no such file\n")
    code, _, err = await both(tmp_path, url, cluster_name, "apply", "-f", str(good), env={"DROVER_CLUSTER": "Bad Name"})
    assert code == 2 and err.startswith("error: ")
    assert len(controller()) == 8  # good, stdin + good, refused, bad: 4 requests by each entry point


async def test_fast_apply_without_a_controller_or_a_server(
    tmp_path: Path, nats_server: NatsServer, cluster_name: str
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    code, _, err = await both(tmp_path, nats_server.url, cluster_name, "apply", "-f", str(good))
    assert code == 1 and "no controller answered" in err and "(no responders)" in err
    code, _, err = await both(tmp_path, "nats://127.0.0.1:1", cluster_name, "apply", "-f", str(good))
    assert code == 1 and err.startswith("error: cannot reach the drover cluster at nats://127.0.0.1:1")


def test_python_dash_m_drover_and_the_console_script_use_the_entry() -> None:
    root = Path(__file__).resolve().parents[2]
    assert "drover.cli.entry" in (root / "drover" / "__main__.py").read_text()
    assert 'drover = "drover.cli.entry:main"' in (root / "pyproject.toml").read_text()
