"""Assignment record size and codec time for 10,000 replicas on one node (issue 9), and the decode time of
a service record with 20 revisions (specs are validated when decoded, once per distinct spec).

Baseline, in the same run: the older form (the full spec inside every container). NATS' default maximum
payload is 1 MiB; the older form exceeded it, so such an assignment could never be written.
Run: .venv/bin/python bench/bench_assignment.py
"""

from __future__ import annotations

import random
import time
from typing import Any

from drover.shared import wire
from drover.shared.models import AssignedContainer, Assignment, RevisionEntry, ServiceRecord, spec_of

REPLICAS = 10_000


def spec() -> dict[str, Any]:
    return {
        "image": "local/busybox:latest",
        "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
        "env": {f"VAR_{i}": "x" * 40 for i in range(10)},
        "network": "bridge",
        "ports": [{"name": "http", "container": 8080, "expose": 18080}],
        "resources": {"cpu": 0.0, "memory": 0},
        "health": {"http": {"path": "/", "port": 8080}, "interval": 2.0, "timeout": 1.0, "failure_threshold": 3},
        "restart": "always",
        "stop_grace": 10.0,
        "update": {"max_surge": 1, "max_unavailable": 0, "min_ready": 5.0},
    }


def timed(fn: Any, n: int = 5) -> tuple[Any, float]:
    best = float("inf")
    out = None
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def main() -> None:
    rng = random.Random(1)
    s = spec()
    a = Assignment(
        node="n1",
        generation=1,
        term=1,
        containers=[
            AssignedContainer(id=f"{rng.getrandbits(40):010x}", service="s" * 63, revision=1, spec=s)
            for _ in range(REPLICAS)
        ],
    )
    old, t_old_enc = timed(lambda: wire.encode(a.model_dump(mode="json")))
    new, t_enc = timed(a.to_wire)
    decoded, t_dec = timed(lambda: Assignment.from_wire(new))
    shared = len({id(c.spec) for c in decoded.containers})
    print(f"{REPLICAS} replicas, 63-character service name, spec of {len(wire.encode(s))} bytes")
    print(f"older form (spec per container): {len(old):,} bytes, encode {t_old_enc * 1000:.0f} ms")
    print(f"per-service form:                {len(new):,} bytes, encode {t_enc * 1000:.0f} ms, "
          f"decode {t_dec * 1000:.0f} ms ({len(old) / len(new):.0f}x smaller; NATS max payload 1,048,576)")
    print(f"decoded: {shared} spec object(s) for the {REPLICAS} replicas")
    revs = [spec_of({**s, "image": f"local/busybox:{i}"}) for i in range(1, 21)]
    rec = ServiceRecord(name="web", spec=revs[-1], revision=20,
                        history=[RevisionEntry(revision=i, spec=r, time=float(i)) for i, r in enumerate(revs, 1)])
    data = rec.to_wire()
    _, t_rec = timed(lambda: [ServiceRecord.from_wire(data) for _ in range(100)])
    print(f"service record with 20 revisions: {len(data):,} bytes, decode {t_rec * 10:.2f} ms")


if __name__ == "__main__":
    main()
