"""Files of a replica: exact bytes and modes on the node, bind mounts for the driver, pruning."""

from __future__ import annotations

import stat
from pathlib import Path

from drover.agent.files import FileWriter, spec_binds
from drover.shared.models import AssignedContainer, Assignment


async def test_prepare_writes_exact_bytes_and_modes(tmp_path: Path) -> None:
    asked: list[str] = []

    async def fetch(name: str) -> bytes:
        asked.append(name)
        return b"secret-bytes"

    writer = FileWriter(tmp_path / "files", tmp_path / "secrets", fetch)
    spec = {
        "image": "local/busybox:latest",
        "files": [{"path": "/etc/a.conf", "content": "x\n", "mode": "0640"}, {"path": "/run/s", "secret": "db",
                                                                             "mode": "0400"}],
        "volumes": [{"host": "/srv/d", "container": "/d", "readonly": True}, {"volume": "v1", "container": "/v"}],
    }
    a = AssignedContainer(id="r1", service="s", revision=1, spec=spec)
    prepared = await writer.prepare(a)
    assert asked == ["db"] and a.file_binds == () and prepared.spec is a.spec  # the shared spec is not changed
    a_file, s_file = tmp_path / "files" / "r1" / "0", tmp_path / "secrets" / "r1" / "1"
    assert a_file.read_bytes() == b"x\n" and s_file.read_bytes() == b"secret-bytes"
    assert stat.S_IMODE(a_file.stat().st_mode) == 0o640 and stat.S_IMODE(s_file.stat().st_mode) == 0o400
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    assert spec_binds(prepared.spec, prepared.file_binds) == [
        "/srv/d:/d:ro", "v1:/v", f"{a_file}:/etc/a.conf:ro", f"{s_file}:/run/s:ro",
    ]
    # the binds are the agent's own: never on the wire
    assert Assignment.from_wire(Assignment(node="n", containers=[prepared]).to_wire()).containers[0].file_binds == ()
    writer.prune(["other"])
    assert not (tmp_path / "files" / "r1").exists() and not (tmp_path / "secrets" / "r1").exists()


async def test_no_files_no_change(tmp_path: Path) -> None:
    async def fetch(name: str) -> bytes:
        raise AssertionError("no secret needed")

    a = AssignedContainer(id="r1", service="s", revision=1, spec={"image": "i"})
    assert await FileWriter(tmp_path, tmp_path, fetch).prepare(a) is a
