"""Proxy benchmark: HTTP requests/s and p99 latency through drover's proxy, through HAProxy and
directly, over the same nginx backends, in one run.

Everything on 127.0.0.1. nginx (Debian's package, run directly on the host: one worker, two
listening ports = two "replicas", a tiny ``return 200`` body, keep-alive allowed) is the backend;
HAProxy (Debian, tcp mode, one thread, round-robin over both ports) and drover's ``NodeProxy``
(in its own process, round-robin over both ports; with uvloop and with the default asyncio loop)
are the proxies; ``wrk`` (Debian, one thread) loads each target for a fixed duration, once with
keep-alive and once with a new connection per request (``-H 'Connection: close'``). Missing tools
are installed with apt-get.

Targets (from the issue): drover keep-alive throughput >= HAProxy's; drover new-connection
throughput >= 50% of HAProxy's.

Run: .venv/bin/python bench/bench_proxy.py [--duration 5] [--connections 50] [--rounds 3]   (~2.5 min)
(the proxy alone: bench/bench_proxy.py --serve PORT --backends P1,P2 [--uvloop])
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"  # the only address this benchmark ever talks to
TOOLS = {"wrk": "wrk", "haproxy": "haproxy", "nginx": "nginx-light"}  # binary -> Debian package

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen {host}:{port1} backlog=4096;
        listen {host}:{port2} backlog=4096;
        location / {{ default_type text/plain; return 200 "hello from nginx\\n"; }}
    }}
}}
"""

HAPROXY_CFG = Path(__file__).with_name("haproxy.cfg")


# ---------------------------------------------------------------------- the proxy under test
def serve(port: int, backend_ports: Sequence[int], use_uvloop: bool, strategy: str) -> None:
    """Run drover's NodeProxy on HOST:port over HOST:backend_ports until SIGTERM; print its stats."""
    if use_uvloop:
        import uvloop

        uvloop.install()
    from drover.agent.proxy import Backend, NodeProxy
    from drover.shared.log import configure

    configure(json=False, level=os.environ.get("BENCH_PROXY_LOG", "warning"))  # to stderr, as in the agent
    backends = tuple(Backend(HOST, p, f"nginx-{p}") for p in backend_ports)

    async def main() -> None:
        proxy = NodeProxy(HOST, lambda service: backends, strategy=strategy)
        await proxy.set_services({"web": port})
        if proxy.errors():
            print(json.dumps({"errors": proxy.errors()}), flush=True)
            sys.exit(1)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print("READY", flush=True)
        await stop.wait()
        print(json.dumps(proxy.stats["web"].as_dict()), flush=True)
        await proxy.close()

    asyncio.run(main())


# ---------------------------------------------------------------------- set-up
def ensure_tools() -> None:
    missing = [pkg for binary, pkg in TOOLS.items() if not _found(binary)]
    if not missing:
        return
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {' '.join(missing)} with apt-get ...", flush=True)
    if subprocess.run([*prefix, "apt-get", "install", "-y", "-q", *missing], env=env).returncode != 0:
        subprocess.run([*prefix, "apt-get", "update", "-q"], env=env, check=True)
        subprocess.run([*prefix, "apt-get", "install", "-y", "-q", *missing], env=env, check=True)


def _found(binary: str) -> bool:
    return shutil.which(binary) is not None or Path("/usr/sbin", binary).exists()


def tool(binary: str) -> str:
    found = shutil.which(binary) or str(Path("/usr/sbin", binary))
    if not Path(found).exists():
        sys.exit(f"{binary} not found even after apt-get install")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, proc: subprocess.Popen[str], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode} before listening on {HOST}:{port}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {HOST}:{port} within {timeout}s")


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------- wrk
@dataclass
class Result:
    rps: float
    p99_ms: float
    errors: str
    cpu_us: float = 0.0  # CPU time of the proxy process per request (user + system), if it is one


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(port: int, duration: float, connections: int, close: bool) -> Result:
    cmd = [tool("wrk"), "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    if close:
        cmd += ["-H", "Connection: close"]
    out = subprocess.run([*cmd, f"http://{HOST}:{port}/"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = [m.group(0).strip() for m in re.finditer(r"(Socket errors:.*|Non-2xx or 3xx responses:.*)", out)]
    return Result(rps, p99, "; ".join(errors))


# ---------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of wrk before each measured run")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    parser.add_argument("--rounds", type=int, default=3, help="repeat the whole matrix (default 3); best kept")
    parser.add_argument("--strategy", default="round-robin")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--backends", help=argparse.SUPPRESS)
    parser.add_argument("--uvloop", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, [int(p) for p in args.backends.split(",")], args.uvloop, args.strategy)
        return

    ensure_tools()
    tmp = Path(tempfile.mkdtemp(prefix="drover-bench-proxy-"))
    backend_ports = [free_port(), free_port()]
    ports = {"haproxy": free_port(), "drover+uvloop": free_port(), "drover+asyncio": free_port()}
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        (tmp / "nginx.conf").write_text(
            NGINX_CONF.format(tmp=tmp, host=HOST, port1=backend_ports[0], port2=backend_ports[1])
        )
        procs["nginx"] = subprocess.Popen(
            [tool("nginx"), "-p", str(tmp), "-e", str(tmp / "nginx-error.log"), "-c", str(tmp / "nginx.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        )
        (tmp / "haproxy.cfg").write_text(
            HAPROXY_CFG.read_text().format(
                host=HOST, port=ports["haproxy"], backend1=backend_ports[0], backend2=backend_ports[1]
            )
        )
        procs["haproxy"] = subprocess.Popen(
            [tool("haproxy"), "-db", "-f", str(tmp / "haproxy.cfg")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        )
        for name in ("drover+uvloop", "drover+asyncio"):
            cmd = [sys.executable, __file__, "--serve", str(ports[name]), "--backends",
                   ",".join(map(str, backend_ports)), "--strategy", args.strategy]
            if name == "drover+uvloop":
                cmd.append("--uvloop")
            procs[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            assert procs[name].stdout is not None
            line = procs[name].stdout.readline().strip()
            if line != "READY":
                sys.exit(f"{name} did not start: {line!r}")
        for port in backend_ports:
            wait_listening(port, procs["nginx"], "nginx")
        wait_listening(ports["haproxy"], procs["haproxy"], "haproxy")

        targets = {"direct": backend_ports[0], **ports}
        results: dict[tuple[str, bool], list[Result]] = {}
        print(f"wrk -t1 -c{args.connections} -d{args.duration:g}s (after {args.warmup:g}s of warm-up), "
              f"nginx: 1 worker, 2 ports; {os.cpu_count()} CPUs; {args.rounds} round(s)", flush=True)
        for rnd in range(args.rounds):
            for close in (False, True):
                for name, port in targets.items():
                    if args.warmup > 0:
                        run_wrk(port, args.warmup, args.connections, close)
                    pid = procs[name].pid if name in procs else None
                    before = cpu_seconds(pid) if pid else 0.0
                    result = run_wrk(port, args.duration, args.connections, close)
                    if pid:
                        result.cpu_us = (cpu_seconds(pid) - before) / (result.rps * args.duration) * 1e6
                    mode = "new-conn " if close else "keepalive"
                    cpu = f"  {result.cpu_us:5.1f} us CPU/req" if result.cpu_us else ""
                    errors = f"  ({result.errors})" if result.errors else ""
                    print(f"  round {rnd + 1} {mode} {name:15s} {result.rps:10.0f} req/s"
                          f"  p99 {result.p99_ms:7.2f} ms{cpu}{errors}", flush=True)
                    results.setdefault((name, close), []).append(result)
    finally:
        proxy_stats = {}
        for name, proc in reversed(procs.items()):  # the proxies first, nginx last
            stop(proc)
            if name.startswith("drover") and proc.stdout is not None:
                text = proc.stdout.read().strip()
                proxy_stats[name] = text.splitlines()[-1] if text else "?"
        shutil.rmtree(tmp, ignore_errors=True)

    def best(name: str, close: bool) -> Result:
        return max(results[(name, close)], key=lambda r: r.rps)

    def median_cpu(name: str, close: bool) -> float:
        return statistics.median(r.cpu_us for r in results[(name, close)])

    def ratio(name: str, close: bool) -> tuple[float, float]:
        """(best against best, median of the per-round ratios) of ``name`` to HAProxy."""
        pairs = zip(results[(name, close)], results[("haproxy", close)], strict=True)
        return best(name, close).rps / best("haproxy", close).rps, statistics.median(a.rps / h.rps for a, h in pairs)

    print(f"\nbest of {args.rounds} round(s); CPU = the proxy process's CPU time per request (median)")
    print(f"{'target':16s} {'keep-alive req/s':>17s} {'p99 ms':>7s} {'CPU us':>7s}"
          f" {'new-conn req/s':>15s} {'p99 ms':>7s} {'CPU us':>7s}")
    for name in targets:
        ka, nc = best(name, False), best(name, True)
        cka = f"{median_cpu(name, False):7.1f}" if ka.cpu_us else f"{'-':>7s}"
        cnc = f"{median_cpu(name, True):7.1f}" if nc.cpu_us else f"{'-':>7s}"
        print(f"{name:16s} {ka.rps:17.0f} {ka.p99_ms:7.2f} {cka} {nc.rps:15.0f} {nc.p99_ms:7.2f} {cnc}")
    hk, hn = best("haproxy", False).rps, best("haproxy", True).rps
    dk, dn = best("direct", False).rps, best("direct", True).rps
    print(f"\nhaproxy vs direct: keep-alive {hk / dk:.0%}, new-conn {hn / dn:.0%}")
    ok = True
    for name in ("drover+uvloop", "drover+asyncio"):
        (kb, km), (nb, nm) = ratio(name, False), ratio(name, True)
        print(f"{name} vs haproxy: keep-alive {kb:.0%} (per-round median {km:.0%}; target >= 100%),"
              f" new-conn {nb:.0%} (per-round median {nm:.0%}; target >= 50%)")
        print(f"    proxy stats {proxy_stats.get(name, '?')}")
        if name == "drover+uvloop":
            ok = kb >= 1.0 and nb >= 0.5
    print("targets met (uvloop, best of rounds)" if ok else "targets NOT met (uvloop, best of rounds)")


if __name__ == "__main__":
    main()
