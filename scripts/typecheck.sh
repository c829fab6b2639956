#!/usr/bin/env bash
# mypy cannot follow setuptools' package-dir mapping (controller/ -> drover.controller, ...), so check a
# shadow tree of symlinks laid out the way the installed package is.
set -euo pipefail
cd "$(dirname "$0")/.."
shadow=.mypy_shadow
rm -rf "$shadow"
mkdir -p "$shadow/drover"
for f in drover/*.py; do ln -s "../../$f" "$shadow/drover/$(basename "$f")"; done
ln -s ../../drover/cli "$shadow/drover/cli"
for pkg in controller agent shared; do ln -s "../../$pkg" "$shadow/drover/$pkg"; done
exec .venv/bin/mypy --config-file pyproject.toml "$shadow/drover" "$@"
