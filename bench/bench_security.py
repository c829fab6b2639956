"""Cost of TLS + JWT authentication on the control bus: the same measurements against a plain nats-server
and one configured as `drover up` configures its own (TLS required, role credentials), in the same run,
trials alternating between the two.

    .venv/bin/python bench/bench_security.py [--trials 3] [--requests 300]

- apply → 10 replicas running (controller and agent as separate daemons, local Docker engine);
- API round trip: `get_nodes` request/reply to the controller, sequential, median and p99;
- connect: a CLI-like connection (TLS handshake + nonce signature) until the first reply.
Target (issue 10): within 10 %. The per-node proxy's data path does not touch NATS, so its throughput does
not change with the bus's security.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Api, Nats, daemon, remove_labelled, service, stop_daemon

SLEEP = ["sleep", "3600"]


class Setup:
    """One nats-server + controller + agent, plain or secured."""

    def __init__(self, secure: bool) -> None:
        from drover.shared.security import SecurityDir, write_credentials

        self.secure = secure
        self.cluster = f"bs{'s' if secure else 'p'}{uuid.uuid4().hex[:6]}"
        self.creds: dict[str, str | None] = {"admin": None, "controller": None, "agent": None}
        self.ca: str | None = None
        config = None
        if secure:
            sec = SecurityDir(Path(tempfile.mkdtemp(prefix="drover-bench-sec-"))).ensure(["127.0.0.1"])
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


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    setups = {False: Setup(False), True: Setup(True)}
    apply_t: dict[bool, list[float]] = {False: [], True: []}
    rtt: dict[bool, list[float]] = {False: [], True: []}
    conn: dict[bool, list[float]] = {False: [], True: []}
    try:
        for s in setups.values():
            async with s.api() as api:
                await api.wait(lambda api=api: ready(api), 60, "agent registered")  # type: ignore[misc]
        for trial in range(args.trials):
            for secure in (trial % 2 == 0, trial % 2 != 0):  # alternate which goes first
                s = setups[secure]
                async with s.api() as api:
                    apply_t[secure].append(await apply_10(api, f"b{trial}"))
                    rtt[secure] += await round_trips(api, args.requests)
                for _ in range(10):
                    conn[secure].append(await connect_once(s))
    finally:
        for s in setups.values():
            s.stop()

    print(f"bench_security ({time.strftime('%Y-%m-%d')}, {args.trials} trials, {args.requests} requests each)")
    for label, data, unit, scale in (
        ("apply -> 10 running (median)", {k: statistics.median(v) for k, v in apply_t.items()}, "s", 1),
        ("get_nodes round trip median", {k: statistics.median(v) for k, v in rtt.items()}, "ms", 1000),
        ("get_nodes round trip p99", {k: pct(v, 0.99) for k, v in rtt.items()}, "ms", 1000),
        ("connect + first reply (median)", {k: statistics.median(v) for k, v in conn.items()}, "ms", 1000),
    ):
        plain, secure = data[False] * scale, data[True] * scale
        print(f"  {label:32s}: plain {plain:8.2f} {unit}   TLS+auth {secure:8.2f} {unit}   "
              f"{(secure / plain - 1) * 100:+6.1f} %")


if __name__ == "__main__":
    asyncio.run(main())
