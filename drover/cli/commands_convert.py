"""``drover convert -f FILE``: a Kubernetes or Compose file as the equivalent drover manifests (YAML)."""

from __future__ import annotations

from typing import Any

import click

from drover.cli import output
from drover.cli.commands_apply import files_option, read_sources
from drover.cli.errors import EXIT_INVALID, CliError


def converted(files: tuple[str, ...]) -> list[dict[str, Any]]:
    """The native documents of ``files`` once every one of them validated (else ``CliError``, exit 2)."""
    from drover.shared.convert import to_native
    from drover.shared.manifest import ManifestError, load_documents, parse_manifests
    from drover.shared.manifest_errors import display_name

    sources = read_sources(files)
    try:
        parse_manifests(sources)  # every problem, foreign or native, in the native format
        native, _ = to_native([(display_name(n), load_documents(t, n)) for n, t in sources])
    except ManifestError as exc:
        raise CliError(*exc.lines(), code=EXIT_INVALID) from None
    if not native:
        raise CliError("no manifests found in " + ", ".join(display_name(n) for n, _ in sources), code=EXIT_INVALID)
    return [doc for _, doc in native]


@click.command("convert")
@files_option
def convert_cmd(files: tuple[str, ...]) -> None:
    """Print the drover manifests equivalent to Kubernetes or Compose files (nothing is applied)."""
    import yaml

    docs = converted(files)
    output.echo(yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=None, width=110).rstrip())
