"""Cost of reading one's own assignment through the subjects that name the key (``shared/ownkey.py``), and how
fast a revocation takes effect, on a nats-server configured as ``drover up`` configures its own.

    .venv/bin/python bench/bench_ownkey.py [--updates 300]

- watch latency: the admin puts node n1's assignment; time until the agent's ``OwnKeyWatch`` (n1's
  credentials) delivers it, against nats-py's ``KeyValue.watch`` (bucket-wide, admin credentials), same run,
  updates alternating between the two watchers' turns;
- direct get of the own key (``own_key_reader``) vs ``KeyValue.get`` (admin), sequential;
- revocation: ``push_account`` of a revocation until the revoked connection is closed by the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import nats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Nats

from drover.shared import bus
from drover.shared.ownkey import OwnKeyWatch, own_key_reader
from drover.shared.security import SecurityDir, connect_options, load_credentials, write_credentials
from drover.shared.security_revoke import push_account
from drover.shared.subjects import Names


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {"median_ms": round(statistics.median(ms), 2), "p99_ms": round(pct(ms, 0.99), 2)}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--updates", type=int, default=300)
    args = ap.parse_args()
    sec = SecurityDir(Path(tempfile.mkdtemp(prefix="drover-bench-ownkey-"))).ensure(["127.0.0.1"])
    conf = sec.path / "security.conf"
    conf.write_text(sec.security_config() + "\n")
    server = Nats(config=str(conf))
    cluster = f"bo{uuid.uuid4().hex[:6]}"
    names = Names(cluster)
    agent_creds = sec.path / "agent.creds"
    write_credentials(agent_creds, sec.issue("agent", cluster=cluster, node="n1"))
    out: dict[str, object] = {"updates": args.updates}
    try:
        admin = await nats.connect(server.url, **connect_options(str(sec.admin_creds), str(sec.ca)))
        agent = await nats.connect(server.url, **connect_options(str(agent_creds), str(sec.ca)))
        store = await bus.open_store(admin, cluster)
        await store.assignments.put("n1", b"0")
        own = await OwnKeyWatch(agent, names.assignments_bucket, "n1").start()
        generic = await store.assignments.watch("n1")
        await own.updates(timeout=5)
        await generic.updates(timeout=5)  # type: ignore[no-untyped-call]
        lat_own: list[float] = []
        lat_generic: list[float] = []
        for i in range(1, args.updates + 1):
            value = str(i).encode()
            t0 = time.perf_counter()
            await store.assignments.put("n1", value)
            got = await own.updates(timeout=5)
            t1 = time.perf_counter()
            while True:
                entry = await generic.updates(timeout=5)  # type: ignore[no-untyped-call]
                if entry is not None and entry.value == value:
                    break
            t2 = time.perf_counter()
            assert got is not None and got.value == value
            lat_own.append(t1 - t0)
            lat_generic.append(t2 - t0)  # includes the own watch's turn: reported as an upper bound
        out["watch_own_key"] = summary(lat_own)
        out["watch_kv_bucketwide_upper_bound"] = summary(lat_generic)
        await own.stop()
        await generic.stop()  # type: ignore[no-untyped-call]

        reader = own_key_reader(agent, names.assignments_bucket)
        gets_own, gets_kv = [], []
        for _ in range(args.updates):
            t0 = time.perf_counter()
            await reader.get("n1")
            t1 = time.perf_counter()
            await store.assignments.get("n1")
            gets_own.append(t1 - t0)
            gets_kv.append(time.perf_counter() - t1)
        out["get_own_key_direct"] = summary(gets_own)
        out["get_kv_nats_py_admin"] = summary(gets_kv)

        victim_creds = sec.path / "victim.creds"
        revocations: list[float] = []
        for _ in range(5):
            write_credentials(victim_creds, sec.issue("client", cluster=cluster))
            closed = asyncio.Event()

            async def on_closed(ev: asyncio.Event = closed) -> None:
                ev.set()

            async def quiet(_exc: Exception) -> None:
                return None

            victim = await nats.connect(
                server.url, **connect_options(str(victim_creds), str(sec.ca)), closed_cb=on_closed, error_cb=quiet,
                allow_reconnect=False,
            )
            token = sec.revoke(load_credentials(str(victim_creds)).public_key)
            t0 = time.perf_counter()
            result = await push_account([server.url], sec, token)
            await asyncio.wait_for(closed.wait(), 10)
            revocations.append(time.perf_counter() - t0)
            assert result.complete
            await victim.close()
        out["revocation_to_connection_closed"] = summary(revocations)
        await agent.close()
        await admin.close()
    finally:
        server.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
