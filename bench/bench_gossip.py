"""Gossip benchmark: 50 nodes on 127.0.0.1..127.0.0.50, spread over one or a few worker processes.

1. Convergence: a random node changes its endpoint set (one endpoint added); the time until all
   nodes show it in ``endpoints()`` is one sample. Prints median and p99 over ``--trials`` changes
   (target: median ≤ 1 s), and the per-observer median.
2. Failure detection: a node is killed (no leave message); the time until every other node holds
   it as ``dead`` is one sample (target ≤ 2 s). Repeated ``--kills`` times on different nodes.
Also prints false suspicions/deaths seen while nothing was failing (loop lag under load shows here), the
load average before and after, and the CPU time the workers used.

Every node has its own ed25519 key (derived from its name here, so worker processes share one key directory
without a bus) and authenticates every datagram and record as the agents do: pair-key MACs on datagrams,
ed25519 on sync requests and on the records a node originates.

``--micro`` instead times the per-datagram authentication alone, both ways in the same run: the signed form
(ed25519 signature + cluster HMAC, then their checks: what every datagram cost in codec version 2) and the
pair-MAC form (version 3's usual case), plus a pair key's derivation and a record check with and without the
verified-record cache.

Times come from CLOCK_MONOTONIC, which is the same clock in every process on one Linux host.
Only 127.x addresses are used.

Run: .venv/bin/python bench/bench_gossip.py [--nodes 50] [--procs 1] [--trials 30] [--kills 3] [--uvloop]
     .venv/bin/python bench/bench_gossip.py --micro
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from drover.agent.gossip import Endpoint, GossipConfig, GossipNode, Status, codec
from drover.agent.gossip.codec import Kind
from drover.agent.gossip.identity import NodeKey, Verifier
from drover.agent.gossip.pairkeys import derive
from drover.agent.gossip.state import EndpointEntry

KEY = b"bench-cluster-key"
SELF = str(Path(__file__).resolve())


def identity(name: str) -> NodeKey:
    return NodeKey.from_seed(hashlib.sha256(name.encode()).digest())


def addr(i: int) -> str:
    return f"127.0.{i // 250}.{i % 250 + 1}"


def out(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------- worker (hosts some nodes)
async def worker(first: int, count: int, total: int) -> None:
    nodes: dict[str, GossipNode] = {}
    seen: dict[str, set[str]] = {}
    dead_seen: dict[str, set[tuple[str, Status, int]]] = {}
    local_eps: dict[str, list[Endpoint]] = {}

    def watch(node: GossipNode) -> None:
        seen[node.name] = set()
        dead_seen[node.name] = set()

        def changed() -> None:
            now = time.monotonic()
            for e in node.state.entries.values():
                c = e.endpoint.container
                if c.startswith("trial-") and c not in seen[node.name] and e.present and node.state.up(e.origin):
                    seen[node.name].add(c)
                    out({"ev": "seen", "trial": c, "at": node.name, "t": now})
            for m in node.state.members.values():
                # per incarnation: a node falsely declared dead earlier (and refuted since) is reported again
                if (
                    m.status in (Status.DEAD, Status.SUSPECT)
                    and (seen_as := (m.name, m.status, m.incarnation)) not in (dead_seen[node.name])
                ):
                    dead_seen[node.name].add(seen_as)
                    out({"ev": m.status.value, "who": m.name, "at": node.name, "t": now})

        node.on_change(changed)

    directory = {f"n{i}": identity(f"n{i}").public for i in range(total)}
    for i in range(first, first + count):
        n = GossipNode(f"n{i}", addr(i), KEY, config=GossipConfig(), identity=identity(f"n{i}"))
        n.trust(directory)
        watch(n)
        await n.start()
        nodes[n.name] = n
        local_eps[n.name] = []
        out({"ev": "ready", "name": n.name, "address": n.address, "port": n.port})

    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "join":
            for n in nodes.values():
                n.join([tuple(s) for s in cmd["seeds"]])  # type: ignore[misc]
        elif cmd["cmd"] == "count":
            out(
                {
                    "ev": "count",
                    "counts": {k: sum(m.status is Status.ALIVE for m in n.members()) for k, n in nodes.items()},
                }
            )
        elif cmd["cmd"] == "change":
            n = nodes[cmd["node"]]
            local_eps[n.name].append(Endpoint("bench", n.address, 20000 + cmd["k"], n.name, cmd["trial"], 1, True))
            out({"ev": "changed", "trial": cmd["trial"], "t": time.monotonic()})
            n.set_local_endpoints(local_eps[n.name])
        elif cmd["cmd"] == "kill":
            n = nodes.pop(cmd["node"])
            t = time.monotonic()
            await n.stop(leave=False)
            out({"ev": "killed", "who": n.name, "t": t})
        elif cmd["cmd"] == "stats":
            tot: dict[str, int] = {}
            for n in nodes.values():
                for k, v in n.stats.items():
                    tot[k] = tot.get(k, 0) + v
            out({"ev": "stats", "stats": tot})
        elif cmd["cmd"] == "quit":
            break
    for n in nodes.values():
        await n.stop(leave=False)


# ---------------------------------------------------------------------- driver
class Driver:
    def __init__(self, procs: list[asyncio.subprocess.Process]) -> None:
        self.procs = procs
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.readers = [asyncio.get_running_loop().create_task(self._read(p)) for p in procs]

    async def _read(self, p: asyncio.subprocess.Process) -> None:
        assert p.stdout is not None
        while line := await p.stdout.readline():
            await self.events.put(json.loads(line))

    def send(self, proc: int, cmd: dict[str, Any]) -> None:
        stdin = self.procs[proc].stdin
        assert stdin is not None
        stdin.write((json.dumps(cmd) + "\n").encode())

    def broadcast(self, cmd: dict[str, Any]) -> None:
        for i in range(len(self.procs)):
            self.send(i, cmd)

    async def until(self, pred: Any, timeout: float) -> list[dict[str, Any]]:
        """Collect events until ``pred(event)`` says done (or the timeout passes)."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            try:
                ev = await asyncio.wait_for(self.events.get(), left)
            except TimeoutError:
                return got
            got.append(ev)
            if pred(ev, got):
                return got


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


async def drive(args: argparse.Namespace) -> None:
    n, procs = args.nodes, args.procs
    per = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    starts = [sum(per[:i]) for i in range(procs)]
    host_of = {f"n{i}": p for p in range(procs) for i in range(starts[p], starts[p] + per[p])}
    cmd = [sys.executable, SELF, "--worker", "--uvloop" if args.uvloop else "--no-uvloop"]
    ps = [
        await asyncio.create_subprocess_exec(
            *cmd,
            "--first",
            str(starts[i]),
            "--count",
            str(per[i]),
            "--total",
            str(n),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for i in range(procs)
    ]
    d = Driver(ps)
    ready = await d.until(lambda e, got: sum(x["ev"] == "ready" for x in got) == n, 30)
    seeds = [[e["name"], e["address"], e["port"]] for e in ready if e["ev"] == "ready"]
    t0 = time.monotonic()
    load0 = os.getloadavg()
    # like the agent: every node gets the node list (here, the first three) as seeds
    d.broadcast({"cmd": "join", "seeds": seeds[:3]})
    counts: list[int] = []
    joined = False
    while time.monotonic() - t0 < args.join_timeout:
        d.broadcast({"cmd": "count"})
        got = await d.until(lambda e, got: sum(x["ev"] == "count" for x in got) == procs, 5)
        counts = [c for e in got if e["ev"] == "count" for c in e["counts"].values()]
        if len(counts) == n and min(counts) == n:
            joined = True
            break
        await asyncio.sleep(0.1)
    print(
        f"gossip bench: {n} nodes in {procs} process(es), uvloop={args.uvloop}, 2 cores shared, GossipConfig() defaults"
    )
    print(f"  load average at start: {' '.join(f'{x:.2f}' for x in load0)}")
    if not joined:
        print(
            f"  full membership NOT reached within {args.join_timeout:.0f}s: members seen alive per node "
            f"min {min(counts, default=0)}, median {statistics.median(counts) if counts else 0}"
        )
        await finish(d, ps, procs)
        sys.exit(1)
    print(f"  full membership on all nodes {time.monotonic() - t0:.2f}s after join (seeds: 3 nodes)")
    await asyncio.sleep(1.0)  # let the join traffic settle

    rng = random.Random(args.seed)
    conv: list[float] = []
    per_observer: list[float] = []
    suspects_before = 0
    for k in range(args.trials):
        node = f"n{rng.randrange(n)}"
        trial = f"trial-{k}"
        d.send(host_of[node], {"cmd": "change", "node": node, "trial": trial, "k": k})
        evs = await d.until(lambda e, got, tr=trial: sum(x["ev"] == "seen" and x["trial"] == tr for x in got) == n, 10)
        suspects_before += sum(e["ev"] in ("suspect", "dead") for e in evs)
        changed = [e["t"] for e in evs if e["ev"] == "changed" and e["trial"] == trial]
        seen = [e["t"] for e in evs if e["ev"] == "seen" and e["trial"] == trial]
        if not changed or len(seen) < n:
            print(f"  trial {k}: only {len(seen)}/{n} nodes saw the change within 10 s")
            continue
        conv.append(max(seen) - changed[0])
        per_observer.extend(t - changed[0] for t in seen)
        await asyncio.sleep(0.2 + rng.random() * 0.2)
    if conv:
        print(
            f"  endpoint change -> visible on all {n}: median {statistics.median(conv) * 1000:.0f} ms, "
            f"p99 {pct(conv, 99) * 1000:.0f} ms, max {max(conv) * 1000:.0f} ms ({len(conv)} changes); "
            f"per observer median {statistics.median(per_observer) * 1000:.0f} ms"
        )
    print(f"  false suspicions/deaths during the convergence phase: {suspects_before}")

    detect: list[float] = []
    alive = set(host_of)
    victims = rng.sample(sorted(set(host_of) - {"n0", "n1", "n2"}), args.kills)
    for v in victims:
        d.send(host_of[v], {"cmd": "kill", "node": v})
        alive.discard(v)
        need = len(alive)

        def done(e: dict[str, Any], got: list[dict[str, Any]], v: str = v, need: int = need) -> bool:
            return len({x["at"] for x in got if x["ev"] == "dead" and x["who"] == v}) >= need

        evs = await d.until(done, 10)
        killed = [e["t"] for e in evs if e["ev"] == "killed"]
        deaths = {e["at"]: e["t"] for e in evs if e["ev"] == "dead" and e["who"] == v}
        if not killed or len(deaths) < need:
            print(f"  kill {v}: only {len(deaths)}/{need} nodes declared it dead within 10 s")
            continue
        detect.append(max(deaths.values()) - killed[0])
        first = min(deaths.values()) - killed[0]
        print(
            f"  kill {v}: first node declares it dead after {first * 1000:.0f} ms, "
            f"all {need} after {detect[-1] * 1000:.0f} ms"
        )
        await asyncio.sleep(1.0)
    if detect:
        print(
            f"  failure detected by all: median {statistics.median(detect) * 1000:.0f} ms, "
            f"max {max(detect) * 1000:.0f} ms ({len(detect)} kills)"
        )
    await finish(d, ps, procs)


async def finish(d: Driver, ps: list[asyncio.subprocess.Process], procs: int) -> None:
    """Print the workers' summed counters, stop them, and print their CPU time and the load average."""
    d.broadcast({"cmd": "stats"})
    got = await d.until(lambda e, got: sum(x["ev"] == "stats" for x in got) == procs, 5)
    tot: dict[str, int] = {}
    for e in got:
        if e["ev"] == "stats":
            for k2, val in e["stats"].items():
                tot[k2] = tot.get(k2, 0) + val
    print(
        "  totals: "
        + ", ".join(
            f"{k2}={tot.get(k2, 0)}"
            for k2 in (
                "packets_out",
                "packets_in",
                "signed_out",
                "signed_in",
                "probe_failures",
                "suspected",
                "declared_dead",
                "refutations",
                "dropped_malformed",
                "dropped_auth",
                "dropped_signature",
                "dropped_unknown_sender",
                "dropped_replay",
                "dropped_oversize",
                "handler_errors",
            )
        )
    )
    d.broadcast({"cmd": "quit"})
    for p in ps:
        assert p.stdin is not None
        p.stdin.close()
        await p.wait()
    for r in d.readers:
        r.cancel()
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"  workers' CPU: {cpu.ru_utime + cpu.ru_stime:.1f}s; load average at end: "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )


# ---------------------------------------------------------------------- micro: per-datagram cost
def _timeit(fn: Any, n: int) -> float:
    """Best of 5 rounds of ``n`` calls, in µs per call (the best round is the one least disturbed by the
    other engineers' load)."""
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e6


def micro(n: int) -> None:
    a, b = identity("n1"), identity("n2")
    pair = derive(KEY, "n1", a, "n2", b.public)
    assert pair is not None
    records = [
        codec.encode_update(
            EndpointEntry(Endpoint("web", "127.0.0.1", 30000 + i, "n1", f"c-{i:04d}", 1, True), 1, i, True), a
        )
        for i in range(40)
    ]
    print(f"gossip per-datagram authentication, best of 5 x {n}; load average {os.getloadavg()[0]:.2f}")
    for label, k in (("ping, no updates", 0), ("ping + 3 records", 3), ("full datagram", 40)):
        body, _ = codec.pack(Kind.PING, "n1", 1, records[:k], nonce=1)
        signed = codec.seal_signed("n1", body, KEY, a)
        paired = codec.seal_pair("n1", body, pair)
        verifier = Verifier()

        def check_signed(data: bytes = signed, verifier: Verifier = verifier) -> None:
            env = codec.open_envelope(data)
            assert codec.cluster_ok(env, KEY) and codec.signature_ok(env, a.public, verifier)

        def check_pair(data: bytes = paired) -> None:
            env = codec.open_envelope(data)
            assert codec.pair_ok(env, pair)  # type: ignore[arg-type]

        seal_s = _timeit(lambda body=body: codec.seal_signed("n1", body, KEY, a), n)
        seal_p = _timeit(lambda body=body: codec.seal_pair("n1", body, pair), n)  # type: ignore[arg-type]
        open_s, open_p = _timeit(check_signed, n), _timeit(check_pair, n)
        parse = _timeit(lambda data=paired: codec.decode_body(codec.open_envelope(data)), n)
        print(
            f"  {label} ({len(paired)} B): signed (v2's way) seal {seal_s:.1f} + check {open_s:.1f} µs; "
            f"pair MAC seal {seal_p:.1f} + check {open_p:.1f} µs "
            f"({(seal_s + open_s) / (seal_p + open_p):.0f}x less); parsing the body {parse:.1f} µs (both)"
        )
    derive_us = _timeit(lambda: derive(KEY, "n1", a, "n2", b.public), max(1, n // 10))
    rec = codec.decode(
        codec.seal_pair("n1", codec.pack(Kind.GOSSIP, "n1", 1, records[:1], nonce=1)[0], pair), KEY, pair_key=pair
    ).records[0]
    fresh = _timeit(lambda: codec.verify_record(rec, a.public, Verifier()), max(1, n // 10))
    cached_v = Verifier()
    cached = _timeit(lambda: codec.verify_record(rec, a.public, cached_v), n)
    print(
        f"  pair key derivation (once per peer) {derive_us:.0f} µs; an origin-signed record's check "
        f"{fresh:.0f} µs, again (cached) {cached:.1f} µs"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--uvloop", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--join-timeout", type=float, default=120.0, help="give up when not all joined by then (s)")
    ap.add_argument("--micro", type=int, nargs="?", const=2000, default=0, help="time per-datagram auth only")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--total", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.micro:
        micro(args.micro)
        return
    if args.uvloop:
        import uvloop

        uvloop.install()
    if args.worker:
        import structlog

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
        asyncio.run(worker(args.first, args.count, args.total))
    else:
        asyncio.run(drive(args))


if __name__ == "__main__":
    main()
