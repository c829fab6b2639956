"""What ``drover apply`` does, without click: read the manifests (files, directories, stdin; bounded), send
them to the controller, and check them locally when the controller refuses them or cannot be reached. The
click command (``commands_apply``) and the fast entry point (``entry``: ``drover apply -f FILE…`` without
loading click) both run ``apply_files``."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from drover.cli.errors import EXIT_INVALID, CliError, reply_error

if TYPE_CHECKING:
    from drover.cli.context import Target

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
MAX_STDIN_CHARS = 1024 * 1024 + 1  # = MAX_MANIFEST_BYTES + 1 (not imported: the CLI starts fast)


def read_sources(files: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(name, text)`` for each ``-f`` value: a file, ``-`` (stdin) or a directory (its manifests, sorted)."""
    sources: list[tuple[str, str]] = []
    problems: list[str] = []
    stdin_used = False
    for f in files:
        if f == "-":
            if stdin_used:
                continue
            stdin_used = True
            _read_stdin(sources, problems)
            continue
        path = Path(f)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES)
            if not found:
                problems.append(f"{f}: no *.yaml, *.yml or *.json files in this directory")
            for p in found:
                _read(p, str(p), sources, problems)
            continue
        _read(path, f, sources, problems)
    if problems:
        raise CliError(*problems, code=EXIT_INVALID)
    return sources


def _read_bounded(stream: BinaryIO, name: str, sources: list[tuple[str, str]], problems: list[str]) -> None:
    """Read at most 1 MiB + 1 byte: a bigger manifest (or a pipe that never ends) is refused without
    holding it all; sizes are not trusted (stdin, named pipes, /dev/zero have none)."""
    from drover.shared.limits import MAX_MANIFEST_BYTES
    from drover.shared.manifest_load import TOO_LARGE

    shown = "<stdin>" if name == "-" else name
    data = stream.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        problems.append(f"{shown}: {TOO_LARGE}")
        return
    try:
        sources.append((name, data.decode("utf-8")))
    except UnicodeDecodeError:
        problems.append(f"{shown}: not a UTF-8 text file")


def _read_stdin(sources: list[tuple[str, str]], problems: list[str]) -> None:
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # a text-only stdin (some test runners): bounded all the same
        stream = io.BytesIO(sys.stdin.read(MAX_STDIN_CHARS).encode("utf-8", "surrogatepass"))
    _read_bounded(stream, "-", sources, problems)


def _read(path: Path, name: str, sources: list[tuple[str, str]], problems: list[str]) -> None:
    try:
        with path.open("rb") as f:
            _read_bounded(f, name, sources, problems)
    except FileNotFoundError:
        problems.append(f"{name}: no such file")
    except OSError as exc:
        problems.append(f"{name}: {exc.strerror or exc}")


def load_manifests(files: tuple[str, ...]) -> tuple[list[Any], list[str]]:
    """Parse and validate every document locally; any problem → ``CliError`` exit 2 listing them all.
    Returns the manifests and, for each, where it came from (``web.yaml[doc 1]``)."""
    return validate_sources(read_sources(files))


def validate_sources(sources: list[tuple[str, str]]) -> tuple[list[Any], list[str]]:
    """``load_manifests`` of sources already read."""
    from drover.shared.convert import to_native
    from drover.shared.manifest import ManifestError, load_documents, parse_manifests
    from drover.shared.manifest_errors import display_name

    try:
        manifests = parse_manifests(sources)
    except ManifestError as exc:
        raise CliError(*exc.lines(), code=EXIT_INVALID) from None
    where: list[str] = []
    try:
        loaded = [(display_name(name), load_documents(text, name)) for name, text in sources]
        where = [w for w, _ in to_native(loaded)[0]]
    except ManifestError:  # cannot happen after a successful parse
        pass
    if len(where) != len(manifests):
        where = [f"doc {i}" for i in range(1, len(manifests) + 1)]
    if not manifests:
        raise CliError("no manifests found in " + ", ".join(display_name(n) for n, _ in sources), code=EXIT_INVALID)
    return manifests, where


def unchecked_documents(sources: list[tuple[str, str]]) -> tuple[list[dict[str, Any]], list[str]] | None:
    """The native documents of ``sources`` (YAML read with its bounds, Kubernetes and Compose converted) and
    where each came from, not yet checked against the schema; None when the schema must answer first (a YAML
    or conversion problem, no document, data a request cannot carry as it is).

    ``apply`` sends these and lets the controller check them: it checks every document of a request before
    it stores any (all or nothing) with the same schema, so the CLI need not load the schema library (pydantic
    and the manifest models, most of the CPU time of an apply) unless the controller finds a problem."""
    from drover.shared.convert import to_native
    from drover.shared.manifest_errors import ManifestError, display_name
    from drover.shared.manifest_load import load_documents

    try:
        loaded = [(display_name(name), load_documents(text, name)) for name, text in sources]
    except ManifestError:
        return None
    native, problems = to_native(loaded)
    if problems or not native or not all(isinstance(doc, dict) and _plain(doc) for _, doc in native):
        return None
    return [doc for _, doc in native], [where for where, _ in native]


def _plain(data: Any) -> bool:
    """Only maps with string keys, lists, strings, finite numbers that fit 64 bits, booleans and nulls (what
    a validated manifest is made of; YAML may also give dates, bytes, sets or integer keys)."""
    stack = [data]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                return False
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, bool) or v is None or isinstance(v, str):
            continue
        elif isinstance(v, int):
            if not -(2**63) <= v < 2**64:
                return False
        elif isinstance(v, float):
            if v != v or v in (float("inf"), float("-inf")):
                return False
        else:
            return False
    return True


def apply_files(files: tuple[str, ...], if_revision: int | None, target: Callable[[], Target]) -> list[str]:
    """Apply the manifests of ``files``; the lines to print (``service/web created``). ``target`` is asked
    only once the files were read (a bad file is reported before a bad context)."""
    from drover.cli import call

    sources = read_sources(files)
    unchecked = unchecked_documents(sources)
    if unchecked is None:
        manifests, where = validate_sources(sources)  # every problem, exit 2
        docs = [m.model_dump(mode="json") for m in manifests]
    else:
        docs, where = unchecked
    body: dict[str, Any] = {"manifests": docs, "sources": where}
    if if_revision is not None:
        body["if_revision"] = if_revision

    try:
        reply = call.request(target(), "apply", body, timeout=30.0)
    except CliError:
        if unchecked is not None:  # bad manifests are the answer (exit 2) whether a cluster answers or not
            validate_sources(sources)
        raise
    if not reply.ok:
        if unchecked is not None and reply.code == "invalid":
            validate_sources(sources)  # the controller refused them: the local check's lines, FILE[doc N] …
        raise reply_error("apply", reply)
    data = reply.data
    return [f"{r.get('kind') or 'service'}/{r.get('name')} {r.get('action')}" for r in (data or {}).get("results", [])]
