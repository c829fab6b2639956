"""Files and secrets of a replica, written on the node before its container is created.

Each ``spec.files`` entry becomes one host file, bind-mounted read-only at its path with the given mode.
Plain files live under the agent's data dir (``<data>/files/<replica id>/``); secrets under a tmpfs when the
host has one (``/dev/shm``), so they never reach a disk, in a directory only root can enter. A secret's bytes
come from the controllers on the agent's own subject (``drover.<cluster>.secrets.<node>``), are written
exactly as given, and never go into env, labels or logs. A replica's directory goes when its container does.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from nats.aio.client import Client as NATS

from drover.shared import bus, wire
from drover.shared.errors import TemporaryError
from drover.shared.manifest import ServiceSpec
from drover.shared.models import AssignedContainer

SecretFetch = Callable[[str], Awaitable[bytes]]


class SecretUnavailable(TemporaryError):
    """The controllers did not give a secret (none answers, or this node may not read it)."""


def default_dirs(cluster: str, node: str, data_dir: str | None = None) -> tuple[Path, Path]:
    """(files dir, secrets dir) for an agent: under its data dir (else ``$DROVER_HOME/agents/…``) and under
    ``/dev/shm`` when present."""
    home = Path(os.environ.get("DROVER_HOME") or "~/.drover").expanduser()
    files = Path(data_dir) / "files" if data_dir else home / "agents" / cluster / node / "files"
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else home / "agents"
    return files, base / f"drover-secrets-{cluster}-{node}"


SECRET_TIMEOUT = 10.0  # s for a secret's bytes, over several attempts (``bus.request_retrying``)


def secret_fetcher(nc: NATS, subject: str) -> SecretFetch:
    """Ask the controllers for a secret's bytes on this node's own subject."""

    async def fetch(name: str) -> bytes:
        try:
            # asked again while a controller is paused or restarting (a replica waits for its secret)
            msg = await bus.request_retrying(nc, subject, wire.encode({"name": name}), timeout=SECRET_TIMEOUT)
            reply = wire.decode(msg.data)
        except Exception as exc:
            raise SecretUnavailable(f"secret {name}: no controller answered ({type(exc).__name__})") from None
        data = reply.get("data")
        if not reply.get("ok") or not isinstance(data, bytes):
            raise SecretUnavailable(f"secret {name}: {reply.get('error') or 'refused'}")
        return data

    return fetch


class FileWriter:
    """Writes a replica's files before its container starts; removes them after it is gone."""

    def __init__(self, files_dir: Path, secrets_dir: Path, fetch: SecretFetch):
        self.files_dir = files_dir
        self.secrets_dir = secrets_dir
        self.fetch = fetch

    async def prepare(self, a: AssignedContainer) -> AssignedContainer:
        """``a`` with the bind mounts of its files (``file_binds``; unchanged without files)."""
        if not a.spec.files:
            return a
        binds: list[str] = []
        for i, f in enumerate(a.spec.files):
            base = self.secrets_dir if f.secret is not None else self.files_dir
            data = await self.fetch(f.secret) if f.secret is not None else (f.content or "").encode()
            target = base / a.id / str(i)
            _write(target, data, int(f.mode, 8), private_root=base)
            binds.append(f"{target}:{f.path}:ro")
        return a.model_copy(update={"file_binds": tuple(binds)})

    def prune(self, keep: Iterable[str]) -> None:
        """Remove the directories of replicas not in ``keep`` (gone containers, an earlier agent's leftovers)."""
        wanted = set(keep)
        for base in (self.files_dir, self.secrets_dir):
            try:
                entries = list(base.iterdir())
            except OSError:
                continue
            for d in entries:
                if d.name not in wanted:
                    shutil.rmtree(d, ignore_errors=True)


def _write(target: Path, data: bytes, mode: int, *, private_root: Path) -> None:
    private_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)  # exactly the spec's mode (the umask would narrow it)
    os.replace(tmp, target)


def spec_binds(spec: ServiceSpec, file_binds: Iterable[str] = ()) -> list[str]:
    """Docker ``Binds`` for a spec: its volumes (host paths, named volumes) and the files the agent wrote
    (``AssignedContainer.file_binds``)."""
    out = [f"{v.host or v.volume}:{v.container}" + (":ro" if v.readonly else "") for v in spec.volumes]
    return [*out, *file_binds]
