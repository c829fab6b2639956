"""Cost of TLS + JWT authentication on the control bus: the same measurements against a plain nats-server
and one configured as `drover up` configures its own (TLS required, role credentials), in the same run,
trials alternating which of the two goes first.

    .venv/bin/python bench/bench_security.py [--trials 3] [--requests 300] [--roll-requests 20000]
                                             [--concurrency 4] [--duration 5] [--connections 50]

- apply → 10 replicas running (controller and agent as separate daemons, local Docker engine);
- API round trip: `get_nodes` request/reply to the controller, sequential, median and p99;
- connect: a CLI-like connection (TLS handshake + nonce signature) until the first reply;
- rolling update under load (bench_rollout's 4-replica busybox httpd service, revision k → k+1): HTTP
  requests through the agent's per-node proxy, a new connection each, ``--concurrency`` at a time, from
  before the new spec is applied until half a second after the new revision is available; the rollout's
  duration and the failed requests;
- per-node proxy throughput: ``wrk`` (bench_proxy's) through the agent's proxy to a 2-replica nginx service
  (Debian's nginx binary and its libraries bind-mounted read-only into the busybox image), with keep-alive
  and with a new connection per request, and the agent process's CPU time per request;
- the agent's CPU time at rest (its services running, no traffic).
Everything on 127.0.0.1. Target (issue 10): within 10 %.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_proxy import cpu_seconds, ensure_tools, run_wrk, tool
from bench_rollout import Roll, answers, free_port, roll_under_load, start_web
from common import Api, Nats, daemon, remove_labelled, service, stop_daemon

SLEEP = ["sleep", "3600"]
NGINX_CONF = """\
worker_processes 1;
user nobody nobody;
daemon off;
pid /tmp/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path /tmp/cb;
    proxy_temp_path /tmp/p;
    fastcgi_temp_path /tmp/f;
    uwsgi_temp_path /tmp/u;
    scgi_temp_path /tmp/s;
    server { listen 8080 backlog=4096; location / { default_type text/plain; return 200 "v1\\n"; } }
}
"""


def nginx_service(expose: int) -> dict[str, object]:
    """Two nginx replicas in the busybox image: the host's nginx binary and the libraries it links bind-mounted
    read-only at the same paths (busybox has no HTTP server that keeps connections alive)."""
    binary = tool("nginx")
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = sorted({str(Path(w).parent) for w in ldd.split() if w.startswith("/")})
    volumes = [{"host": binary, "container": "/nginx", "readonly": True},
               *({"host": d, "container": d, "readonly": True} for d in libs)]
    return service("ka", 2, ["/nginx", "-p", "/tmp", "-e", "stderr", "-c", "/etc/bench-nginx.conf"],
                   ports=[{"name": "http", "container": 8080, "expose": expose}],
                   resources={"cpu": 0, "memory": "32Mi"},  # no CPU quota: the proxy is what is measured
                   volumes=volumes, files=[{"path": "/etc/bench-nginx.conf", "content": NGINX_CONF}])


class Setup:
    """One nats-server + controller + agent, plain or secured."""

    def __init__(self, secure: bool) -> None:
        from drover.shared.security import SecurityDir, write_credentials

        self.secure = secure
        self.cluster = f"bs{'s' if secure else 'p'}{uuid.uuid4().hex[:6]}"
        self.creds: dict[str, str | None] = {"admin": None, "controller": None, "agent": None}
        self.ca: str | None = None
        self.keys: Path | None = None  # the throw-away CA, account keys and credentials
        config = None
        if secure:
            self.keys = Path(tempfile.mkdtemp(prefix="drover-bench-sec-"))
            sec = SecurityDir(self.keys).ensure(["127.0.0.1"])
            conf = sec.path / "security.conf"
            conf.write_text(sec.security_config() + "\n")
            config = str(conf)
            self.ca = str(sec.ca)
            self.creds["admin"] = str(sec.admin_creds)
            for role, node in (("controller", None), ("agent", "bench-a")):
                path = sec.path / f"{role}.creds"
                write_credentials(path, sec.issue(role, cluster=self.cluster, node=node))
                self.creds[role] = str(path)
        self.nats = Nats(config=config)
        self.roll_port, self.ka_port = free_port(), free_port()  # the agent's proxy listens on 127.0.0.1
        self.revision = 1  # of bench_rollout's ``roll`` service

        def auth(role: str) -> list[str]:
            return ["--creds", self.creds[role] or "", "--ca", self.ca or ""] if secure else []

        self.ctl = daemon("controller", "--nats", self.nats.url, "--cluster", self.cluster, *auth("controller"))
        self.agent = daemon("agent", "--nats", self.nats.url, "--cluster", self.cluster, "--node", "bench-a",
                            "--address", "127.0.0.1", *auth("agent"))

    def api(self) -> Api:
        return Api(self.nats.url, self.cluster, creds=self.creds["admin"], ca=self.ca)

    def stop(self) -> None:
        stop_daemon(self.agent)
        stop_daemon(self.ctl)
        remove_labelled(f"drover.cluster={self.cluster}")
        self.nats.stop()
        if self.keys is not None:
            shutil.rmtree(self.keys, ignore_errors=True)


async def start_services(setup: Setup) -> None:
    async with setup.api() as api:
        await api.wait(lambda: ready(api), 60, "agent registered")
        await start_web(api, setup.roll_port)
        await api.call("apply", manifests=[nginx_service(setup.ka_port)])
        await api.wait(lambda: running(api, "ka", 2), 60, "nginx running")
        await api.wait(lambda: answers(setup.ka_port), 30, "nginx answering through the proxy")


async def roll(setup: Setup, requests: int, concurrency: int) -> Roll:
    setup.revision += 1
    async with setup.api() as api:
        return await roll_under_load(api, setup.roll_port, f"v{setup.revision}", setup.revision, requests,
                                     concurrency, until_rolled=True)


def throughput(setup: Setup, duration: float, connections: int, close: bool) -> tuple[float, float]:
    """Requests/s through the agent's proxy, and the agent process's CPU time per request (µs): the steadier
    figure on a shared machine."""
    run_wrk(setup.ka_port, 1.0, connections, close)  # warm-up
    before = cpu_seconds(setup.agent.pid)
    rps = run_wrk(setup.ka_port, duration, connections, close).rps
    return rps, (cpu_seconds(setup.agent.pid) - before) / (rps * duration) * 1e6


async def idle_cpu(setup: Setup, seconds: float = 5.0) -> float:
    """The agent's CPU time at rest (ms per second: heartbeats, watches, pings over the bus), with its services
    running and no traffic: what the bus's security can cost the node outside any request."""
    before = cpu_seconds(setup.agent.pid)
    await asyncio.sleep(seconds)
    return (cpu_seconds(setup.agent.pid) - before) / seconds * 1e3


async def running(api: Api, name: str, n: int) -> bool:
    rows = await api.call("get_containers", service=name)
    return len(rows) == n and all(r["state"] == "running" for r in rows)


async def ready(api: Api) -> bool:
    return any(n["status"] == "ready" for n in await api.call("get_nodes"))


async def apply_10(api: Api, name: str) -> float:
    t0 = time.monotonic()
    await api.call("apply", manifests=[service(name, 10, SLEEP)])
    await api.wait(lambda: running(api, name, 10), 120, "10 replicas running")
    elapsed = time.monotonic() - t0
    await api.call("delete", names=[name])
    await api.wait(lambda: _gone(api, name), 120, "replicas removed")
    return elapsed


async def _gone(api: Api, name: str) -> bool:
    return not await api.call("get_containers", service=name)


async def round_trips(api: Api, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await api.call("get_nodes")
        out.append(time.perf_counter() - t0)
    return out


async def connect_once(setup: Setup) -> float:
    t0 = time.perf_counter()
    async with setup.api() as api:
        await api.call("leader")
    return time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def line(label: str, plain: float, secure: float, unit: str, more_is_better: bool = False) -> str:
    ratio = secure / plain if plain else float("nan")
    worse = (1 / ratio if more_is_better else ratio) - 1
    return (f"  {label:40s}: plain {plain:9.2f} {unit:5s} TLS+auth {secure:9.2f} {unit:5s} "
            f"TLS/plain {ratio:5.3f}  ({'within' if worse <= 0.10 else 'NOT within'} 10 %)")


def ratios(plain: list[float], secure: list[float]) -> str:
    return ", ".join(f"{t / p:.2f}" for p, t in zip(plain, secure, strict=True))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--requests", type=int, default=300, help="get_nodes round trips per trial")
    ap.add_argument("--roll-requests", type=int, default=20_000, help="bound on the requests of one rollout")
    ap.add_argument("--concurrency", type=int, default=4, help="requests in flight during a rollout")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=50, help="wrk connections")
    args = ap.parse_args()
    ensure_tools()
    both = (False, True)
    apply_t: dict[bool, list[float]] = {k: [] for k in both}
    rtt: dict[bool, list[float]] = {k: [] for k in both}
    conn: dict[bool, list[float]] = {k: [] for k in both}
    rolls: dict[bool, list[Roll]] = {k: [] for k in both}
    rps: dict[tuple[bool, bool], list[float]] = {(k, c): [] for k in both for c in both}  # (secure, close)
    cpu: dict[tuple[bool, bool], list[float]] = {(k, c): [] for k in both for c in both}  # agent µs/request
    rest: dict[bool, list[float]] = {k: [] for k in both}  # agent CPU ms/s at rest
    loads = [loadavg()]
    setups: dict[bool, Setup] = {}
    try:
        for secure in both:
            setups[secure] = Setup(secure)
        for s in setups.values():
            await start_services(s)
        for trial in range(args.trials):
            for secure in (trial % 2 == 0, trial % 2 != 0):  # alternate which goes first
                s = setups[secure]
                async with s.api() as api:
                    apply_t[secure].append(await apply_10(api, f"b{trial}"))
                    rtt[secure] += await round_trips(api, args.requests)
                for _ in range(10):
                    conn[secure].append(await connect_once(s))
                rolls[secure].append(await roll(s, args.roll_requests, args.concurrency))
                rest[secure].append(await idle_cpu(s))
                for close in both:
                    rate, cpu_us = throughput(s, args.duration, args.connections, close)
                    rps[(secure, close)].append(rate)
                    cpu[(secure, close)].append(cpu_us)
                r = rolls[secure][-1]
                print(f"trial {trial + 1} {'TLS+auth' if secure else 'plain   '}: apply {apply_t[secure][-1]:.2f} s, "
                      f"rollout {r.rollout_s:.2f} s ({r.sent} requests, {r.stats['FAILED']} failed), "
                      f"proxy keep-alive {rps[(secure, False)][-1]:.0f} req/s ({cpu[(secure, False)][-1]:.1f} µs "
                      f"agent CPU/req), new-conn {rps[(secure, True)][-1]:.0f} req/s ({cpu[(secure, True)][-1]:.1f} "
                      f"µs); agent at rest {rest[secure][-1]:.1f} ms/s; load {loadavg()}", flush=True)
                loads.append(loadavg())
    finally:
        for s in setups.values():
            s.stop()

    med = statistics.median
    print(f"bench_security ({time.strftime('%Y-%m-%d %H:%M')}, {args.trials} trials, {os.cpu_count()} CPUs, "
          f"load average {loads[0]} at the start, {loads[-1]} at the end)")
    print(line("apply -> 10 running (median)", med(apply_t[False]), med(apply_t[True]), "s"))
    print(line("get_nodes round trip median", med(rtt[False]) * 1e3, med(rtt[True]) * 1e3, "ms"))
    print(line("get_nodes round trip p99", pct(rtt[False], 0.99) * 1e3, pct(rtt[True], 0.99) * 1e3, "ms"))
    print(line("connect + first reply (median)", med(conn[False]) * 1e3, med(conn[True]) * 1e3, "ms"))
    print(line("rollout under load, duration (median)", med(r.rollout_s for r in rolls[False]),
               med(r.rollout_s for r in rolls[True]), "s"))
    print(f"    per-trial TLS/plain: {ratios([r.rollout_s for r in rolls[False]], [r.rollout_s for r in rolls[True]])}")
    failed = {k: sum(r.stats["FAILED"] for r in rolls[k]) for k in both}
    sent = {k: sum(r.sent for r in rolls[k]) for k in both}
    print(f"  {'rollout under load, failed requests':40s}: plain {failed[False]} of {sent[False]}   "
          f"TLS+auth {failed[True]} of {sent[True]}   (target 0)")
    print(line("agent CPU at rest (median)", med(rest[False]), med(rest[True]), "ms/s"))
    print(f"    per-trial TLS/plain: {ratios(rest[False], rest[True])}")
    for close, label in ((False, "keep-alive"), (True, "new connection")):
        print(line(f"proxy {label} (median req/s)", med(rps[(False, close)]), med(rps[(True, close)]), "req/s",
                   more_is_better=True))
        print(f"    per-trial TLS/plain: {ratios(rps[(False, close)], rps[(True, close)])}")
        print(line(f"proxy {label}, agent CPU per request", med(cpu[(False, close)]), med(cpu[(True, close)]), "µs"))
        print(f"    per-trial TLS/plain: {ratios(cpu[(False, close)], cpu[(True, close)])}")
    for k in both:
        for r in rolls[k]:
            for e in r.errors:
                print(f"  {'TLS+auth' if k else 'plain'} rollout error: {e}")


if __name__ == "__main__":
    asyncio.run(main())
