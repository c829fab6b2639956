#!/usr/bin/env bash
# The one command that runs drover's whole test suite:
#   scripts/setup.sh (venv, Docker engine, local/busybox:latest), then ruff, mypy, import-linter
#   and pytest (unit + integration against a real nats-server and dockerd + e2e).
# Every check runs even when an earlier one failed; the exit status is non-zero if any failed.
# Extra arguments go to pytest, e.g.  scripts/test.sh -k rollout  or  scripts/test.sh tests/unit
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
VENV="$ROOT/.venv"

scripts/setup.sh

failed=()
step() { printf '\n==> %s\n' "$*"; }

step "ruff check ."
"$VENV/bin/ruff" check . || failed+=(ruff)

# mypy: the package is spread over drover/, controller/, agent/ and shared/ by setuptools'
# package-dir mapping, which mypy cannot follow; scripts/typecheck.sh checks a symlink shadow tree.
if [[ -x scripts/typecheck.sh ]]; then
    step "mypy (scripts/typecheck.sh)"
    scripts/typecheck.sh || failed+=(mypy)
elif grep -q '^\[tool\.mypy\]' pyproject.toml && grep -Eq '^(files|packages|modules) *=' pyproject.toml; then
    step "mypy"
    "$VENV/bin/mypy" || failed+=(mypy)
else
    step "mypy: not configured, skipped"
fi

# import-linter walks the package directory on disk, so it too needs the package laid out the way it
# is installed: build a throw-away symlink tree and run lint-imports from there (it puts the current
# directory first on sys.path).
if grep -q '^\[tool\.importlinter\]' pyproject.toml; then
    step "lint-imports"
    tree="$(mktemp -d)"
    mkdir "$tree/drover"
    for entry in drover/*; do
        [[ "$(basename "$entry")" == __pycache__ ]] || ln -s "$ROOT/$entry" "$tree/drover/"
    done
    for pkg in controller agent shared; do
        if [[ -d "$pkg" ]]; then ln -s "$ROOT/$pkg" "$tree/drover/$pkg"; fi
    done
    (cd "$tree" && "$VENV/bin/lint-imports" --no-cache --no-logo "$ROOT/pyproject.toml") || failed+=(lint-imports)
    rm -rf "$tree"
fi

# pytest: integration tests need the real engines and must fail (never skip) without them.
export DROVER_REQUIRE_DOCKER=1
export DROVER_REQUIRE_NATS=1
# Run all of tests/ unless the arguments already name test paths.
targets=(tests)
for arg in "$@"; do
    if [[ "$arg" != -* && -e "${arg%%::*}" ]]; then targets=(); break; fi
done
step "pytest"
rc=0
"$VENV/bin/python" -m pytest -q --timeout=300 "${targets[@]}" "$@" || rc=$?
if ((rc == 5)); then
    echo "pytest collected no tests: counted as a failure" >&2
    failed+=(pytest)
elif ((rc != 0)); then
    failed+=(pytest)
fi

echo
if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "all checks passed: ruff, mypy, lint-imports, pytest"
