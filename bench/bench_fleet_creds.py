"""Could a fleet credential (``P-*``) be limited to its own nodes' assignment keys? A measurement, not a feature.

NATS permissions match whole subject tokens, and an assignment key is one token (``P-17``), so "the keys
starting with ``P-``" cannot be granted with a wildcard. The alternative measured here enumerates the own-key
read subjects of ``P-1`` … ``P-N`` (``security_roles.own_key_reads``: a direct get and a filtered consumer
create per key) in the fleet's user JWT, and presents it to a real nats-server configured as ``drover up``
configures its own (TLS, JWT accounts in a MEMORY resolver), with its ``max_control_line`` (the user JWT
travels in the CONNECT line) at drover's 64 KiB or raised. For each case it prints the JWT's size, whether
the server accepts the CONNECT, and, once connected: direct gets and own-key watches of ``P-1``, ``P-N``,
``P-(N+1)`` and a real node's key, and the fleet's own multi-key watch (``shared/keyswatch.py``: one consumer
with a filter per key).

    .venv/bin/python bench/bench_fleet_creds.py [--cases 65536:250,65536:1000,1048576:1000,4194304:3000,...]

Results and what follows from them: docs/BUS.md, Security (a fleet credential stays bucket-wide for reads).

Everything on 127.0.0.1; one throw-away nats-server per case.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Nats

CLUSTER = "c0123456"  # as long as a typical cluster name: the subjects (and so the JWT) grow with it
REFUSED_WITHIN = 2.0  # seconds: a refused publish gets no reply


def fleet_own_key_permissions(prefix: str, count: int) -> object:
    """The fleet role's permissions with its bucket-wide assign reads replaced by own-key reads of
    ``<prefix>-1`` … ``<prefix>-<count>``."""
    from drover.shared import security_roles as roles
    from drover.shared.subjects import Names

    base = roles.fleet(CLUSTER, prefix)
    bucket = Names(CLUSTER).assignments_bucket
    own = [s for i in range(1, count + 1) for s in roles.own_key_reads(bucket, f"{prefix}-{i}")[1:]]
    pub = [s for s in base.pub or [] if f"KV_{bucket}" not in s]
    return dataclasses.replace(base, pub=[*pub, f"$JS.API.STREAM.INFO.KV_{bucket}", *own])


def credentials(sec: object, count: int) -> tuple[str, int]:
    from drover.shared import security_jwt as sj
    from drover.shared import security_roles as roles
    from drover.shared.security import SecurityDir

    assert isinstance(sec, SecurityDir)
    perms = fleet_own_key_permissions("P", count)
    assert isinstance(perms, sj.Permissions)
    user_seed = sj.new_seed("user")
    inbox = f"{roles.own_inbox(sj.public_key(user_seed))}.>"
    perms = dataclasses.replace(perms, sub=[inbox if s == roles.INBOX else s for s in perms.sub or []])
    token = sj.user_jwt(sec.seed("account"), sj.public_key(user_seed), name=f"fleet P-1..P-{count}", perms=perms)
    return sj.creds_text(token, user_seed), len(token)


async def refused(what: str, coro: object) -> str:
    try:
        await asyncio.wait_for(coro, REFUSED_WITHIN)  # type: ignore[arg-type]
    except Exception as exc:
        return f"{what}: refused ({type(exc).__name__})"
    return f"{what}: allowed"


async def case(max_control_line: int, count: int) -> None:
    import nats

    from drover.shared import bus, ownkey
    from drover.shared.keyswatch import watch_keys
    from drover.shared.security import SecurityDir, connect_options, write_credentials
    from drover.shared.subjects import Names

    d = Path(tempfile.mkdtemp(prefix="drover-bench-fleetcreds-"))
    sec = SecurityDir(d).ensure(["127.0.0.1"])
    conf = d / "server.conf"
    conf.write_text(sec.security_config().replace("max_control_line: 65536", f"max_control_line: {max_control_line}")
                    + "\n")
    server = Nats(config=str(conf))
    bucket = Names(CLUSTER).assignments_bucket
    keys = ["P-1", f"P-{count}", f"P-{count + 1}", "real-node"]
    try:
        admin = await bus.connect(server.url, name="admin", creds=str(sec.admin_creds), ca=str(sec.ca))
        js = admin.jetstream()
        kv = await js.create_key_value(bucket=bucket)
        info = await js.stream_info(f"KV_{bucket}")
        await js.update_stream(dataclasses.replace(info.config, allow_direct=True))
        for k in keys:
            await kv.put(k, k.encode())
        text, size = credentials(sec, count)
        path = d / "fleet.creds"
        write_credentials(path, text)
        head = f"max_control_line {max_control_line:>9,} B, N = {count:>5,}: user JWT {size:>9,} B"
        errors: list[Exception] = []

        async def on_error(exc: Exception) -> None:
            errors.append(exc)

        t0 = time.perf_counter()
        try:
            nc = await asyncio.wait_for(nats.connect(
                server.url, **connect_options(str(path), str(sec.ca)), allow_reconnect=False,
                max_reconnect_attempts=0, connect_timeout=5, error_cb=on_error), 20)
        except Exception as exc:
            print(f"{head}: CONNECT refused ({exc})", flush=True)
            return
        print(f"{head}: connected in {(time.perf_counter() - t0) * 1000:.0f} ms", flush=True)
        reader = ownkey.own_key_reader(nc, bucket)
        for k in keys:
            print("    " + await refused(f"direct get {k}", reader.get(k)), flush=True)
        for k in (keys[0], keys[2]):
            watch = ownkey.OwnKeyWatch(nc, bucket, k, timeout=REFUSED_WITHIN)
            print("    " + await refused(f"own-key watch {k}", watch.start()), flush=True)
            await watch.stop()
        print("    " + await refused("keyswatch of P-1, P-2 (one consumer, two filters)",
                                     watch_keys(reader, ["P-1", "P-2"])), flush=True)
        await nc.close()
        await admin.close()
    finally:
        server.stop()
        shutil.rmtree(d, ignore_errors=True)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="65536:250,65536:1000,1048576:1000,4194304:3000,4194304:5000",
                    help="max_control_line:N pairs")
    args = ap.parse_args()
    for pair in args.cases.split(","):
        mcl, count = (int(x) for x in pair.split(":"))
        await case(mcl, count)


if __name__ == "__main__":
    asyncio.run(main())
