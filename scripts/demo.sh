#!/usr/bin/env bash
# drover in one command: set up (venv, Docker, local/busybox image), start an all-in-one cluster
# (`drover up`: nats-server + controller + agent) in the background, deploy examples/web.yaml
# (3 busybox httpd replicas behind the proxy on 127.0.0.1:18080), wait until they are ready, show them and
# the web dashboard's address.
#
#   scripts/demo.sh          # start (or reuse) the cluster and deploy the example
#   scripts/demo.sh --stop   # stop the cluster started by this script (its containers are removed)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
DROVER="${DROVER_BIN:-$ROOT/.venv/bin/drover}"   # DROVER_BIN: override for testing
STATE="$ROOT/.drover"
LOG="$STATE/up.log"
PIDFILE="$STATE/up.pid"
PROXY_URL="http://127.0.0.1:18080/"

say() { printf 'demo: %s\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }
running_pid() {
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    if alive "$pid"; then printf '%s\n' "$pid"; fi
}

stop() {
    local pid
    pid="$(running_pid)"
    if [[ -z "$pid" ]]; then
        say "no drover started by this script is running"
        rm -f "$PIDFILE"
        return 0
    fi
    say "stopping drover up (PID $pid)"
    kill -TERM "$pid"
    local deadline=$((SECONDS + 60))
    while alive "$pid"; do
        if ((SECONDS >= deadline)); then
            say "still running after 60 s; sending SIGKILL (containers may be left behind)"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    rm -f "$PIDFILE"
    say "stopped"
}

case "${1:-}" in
    --stop) stop; exit 0 ;;
    "") ;;
    -h | --help) sed -n '2,8p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (use --stop)" ;;
esac

scripts/setup.sh
mkdir -p "$STATE"

# ------------------------------------------------------------------ 1. the cluster
pid="$(running_pid)"
if [[ -n "$pid" ]]; then
    say "drover up is already running (PID $pid); reusing it"
else
    args=(up --data-dir "$STATE/data")
    # Port 4222 taken (another NATS)? Let drover pick a free one; the URL is in the ready line.
    if (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
        say "127.0.0.1:4222 is in use: asking drover up for a free NATS port"
        args+=(--nats-port 0)
    fi
    say "starting: drover ${args[*]}  (log: .drover/up.log)"
    PYTHONUNBUFFERED=1 nohup "$DROVER" "${args[@]}" >"$LOG" 2>&1 </dev/null &
    pid=$!
    printf '%s\n' "$pid" >"$PIDFILE"
    deadline=$((SECONDS + 60))
    until grep -q 'ready' "$LOG" 2>/dev/null; do
        if ! alive "$pid"; then
            tail -n 30 "$LOG" >&2 || true
            rm -f "$PIDFILE"
            die "drover up exited before it was ready (log above, full log in .drover/up.log)"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 30 "$LOG" >&2 || true
            die "drover up not ready within 60 s (PID $pid still running; scripts/demo.sh --stop)"
        fi
        sleep 0.2
    done
    say "cluster ready (PID $pid)"
fi

# Talk to exactly this cluster: the NATS URL from the ready line (else drover's context file).
nats_url="$(grep 'ready' "$LOG" 2>/dev/null | grep -o 'nats://[0-9A-Za-z.:-]*' | tail -n 1 || true)"
if [[ -n "$nats_url" ]]; then
    export DROVER_NATS="$nats_url"
    say "NATS at $nats_url"
fi

# ------------------------------------------------------------------ 2. the example service
"$DROVER" apply -f examples/web.yaml

say "waiting for web to be ready"
check_ready='
import json, sys
services = json.load(sys.stdin)
web = [s for s in services if s.get("name") == "web"]
ok = bool(web) and web[0].get("replicas", 0) > 0 and web[0].get("ready") == web[0].get("replicas")
if web:
    print("  web: %s/%s ready, status %s" % (web[0].get("ready"), web[0].get("replicas"), web[0].get("status")))
sys.exit(0 if ok else 1)
'
deadline=$((SECONDS + 60))
last=""
while true; do
    if out="$("$DROVER" get services web -o json 2>/dev/null)" \
        && line="$(printf '%s' "$out" | "$ROOT/.venv/bin/python" -c "$check_ready")"; then
        printf '%s\n' "$line"
        break
    fi
    if [[ -n "${line:-}" && "$line" != "$last" ]]; then printf '%s\n' "$line"; last="$line"; fi
    if ((SECONDS >= deadline)); then
        "$DROVER" get services web || true
        die "web did not become ready within 60 s (see .drover/up.log, drover describe service web)"
    fi
    sleep 0.5
done

# ------------------------------------------------------------------ 3. show it
echo
"$DROVER" get containers
echo

http_get() {
    if command -v curl >/dev/null 2>&1; then
        curl -s --max-time 3 "$1"
    else
        "$ROOT/.venv/bin/python" -c 'import sys, urllib.request
sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())' "$1"
    fi
}

body=""
deadline=$((SECONDS + 15))
while ((SECONDS < deadline)); do
    if body="$(http_get "$PROXY_URL")" && [[ -n "$body" ]]; then break; fi
    body=""
    sleep 0.5
done
if [[ -n "$body" ]]; then
    say "curl -s $PROXY_URL  (through the per-node proxy)"
    printf '%s\n' "$body"
else
    say "the proxy on $PROXY_URL did not answer; trying the first container's published port"
    port="$("$DROVER" get containers --service web -o json | "$ROOT/.venv/bin/python" -c '
import json, sys
ports = [c.get("host_port") for c in json.load(sys.stdin) if c.get("host_port")]
print(ports[0] if ports else "")')"
    [[ -n "$port" ]] || die "no container of web has a host port"
    say "curl -s http://127.0.0.1:$port/"
    http_get "http://127.0.0.1:$port/" || die "container on port $port did not answer"
fi

echo
# The dashboard's line follows the ready line once the page answers.
deadline=$((SECONDS + 15))
until dashboard="$(grep -o 'dashboard: http://[0-9.:]*/' "$LOG" 2>/dev/null | tail -n 1)" && [[ -n "$dashboard" ]] \
    || ((SECONDS >= deadline)); do
    sleep 0.2
done
[[ -n "$dashboard" ]] && say "$dashboard  (open it in a browser: live services, nodes, containers, events)"
pid="$(running_pid)"
say "drover is running in the background (PID ${pid:-?}, log .drover/up.log)."
say "try: .venv/bin/drover get services; .venv/bin/drover scale web 5; .venv/bin/drover apply -f examples/worker.yaml"
say "stop it with: scripts/demo.sh --stop   (or: kill ${pid:-PID})"
