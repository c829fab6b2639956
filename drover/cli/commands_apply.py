"""``drover apply`` and ``drover delete``."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from drover.cli import options, output
from drover.cli.errors import EXIT_FAILED, EXIT_INVALID, CliError, reply_error

if TYPE_CHECKING:
    from drover.cli.client import Client  # the client (asyncio, nats) loads only when a command runs

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
SERVICE_WORDS = ("service", "services", "svc")
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


#: ``-f FILE`` (repeatable) of every command that reads manifests
files_option = click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    metavar="FILE",
    help="Manifest file (drover, Kubernetes Deployment+Service or Compose), directory of manifests, "
    "or - for stdin (repeatable).",
)


@click.command("apply")
@files_option
@click.option("--dry-run", is_flag=True, help="Show what would be created or configured, and where; store nothing.")
@click.option(
    "--if-revision", type=click.IntRange(min=0), default=None, metavar="N",
    help="Apply only if the stored revision is N (0: only if the service does not exist yet).",
)
@options.cluster_options
def apply_cmd(files: tuple[str, ...], dry_run: bool, if_revision: int | None) -> None:
    """Create or update services from manifests."""
    if dry_run:
        from drover.cli.commands_plan import preview, print_dry_run

        print_dry_run(preview(files, placements=True, if_revision=if_revision))
        return
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
        reply = options.request("apply", body, timeout=30.0)
    except CliError:
        if unchecked is not None:  # bad manifests are the answer (exit 2) whether a cluster answers or not
            validate_sources(sources)
        raise
    if not reply.ok:
        if unchecked is not None and reply.code == "invalid":
            validate_sources(sources)  # the controller refused them: the local check's lines, FILE[doc N] …
        raise reply_error("apply", reply)
    data = reply.data
    for r in (data or {}).get("results", []):
        output.echo(f"{r.get('kind') or 'service'}/{r.get('name')} {r.get('action')}")


@click.command("delete")
@click.option(
    "-f", "--filename", "files", multiple=True, metavar="FILE", help="Delete the services of these manifests."
)
@click.argument("args", nargs=-1, metavar="[service NAME...]")
@options.cluster_options
def delete_cmd(files: tuple[str, ...], args: tuple[str, ...]) -> None:
    """Delete services: `delete -f FILE` or `delete service NAME...`. Their containers stop."""
    names: list[str] = []
    if files:
        if args:
            raise click.UsageError("give either -f FILE or 'service NAME...', not both")
        manifests, _ = load_manifests(files)
        names = [m.name for m in manifests]
    else:
        if not args:
            raise click.UsageError("nothing to delete: give -f FILE or 'service NAME...'")
        kind, *rest = args
        if kind.lower() not in SERVICE_WORDS:
            if "/" in kind:  # kubectl style service/web
                rest = list(args)
            else:
                raise click.UsageError(f"unknown resource type {kind!r}: only 'service' can be deleted")
        for n in rest:
            k, _, v = n.rpartition("/")
            if k and k.lower() not in SERVICE_WORDS:
                raise click.UsageError(f"unknown resource type {k!r}: only 'service' can be deleted")
            names.append(v)
        if not names:
            raise click.UsageError("give the name of the service(s) to delete")
    names = list(dict.fromkeys(names))

    async def go(c: Client) -> Any:
        reply = await c.request_raw("delete", {"names": names}, timeout=30.0)
        if not reply.ok and reply.code != "not-found":
            raise reply_error("delete", reply)
        return reply

    reply = options.run(go)
    results = (reply.data or {}).get("results") if isinstance(reply.data, dict) else None
    if not results:
        results = [{"name": n, "action": "not-found" if not reply.ok else "deleted"} for n in names]
    missing = []
    for r in results:
        if r.get("action") == "deleted":
            output.echo(f"service/{r.get('name')} deleted")
        else:
            missing.append(f'service "{r.get("name")}" not found')
    if missing:
        raise CliError(*missing, code=EXIT_FAILED)
