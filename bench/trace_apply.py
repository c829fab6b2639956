"""Where the time of ``drover apply`` → 10 running goes: a timeline of one apply, stage by stage.

    .venv/bin/python bench/trace_apply.py [--trials 3] [--replicas 10]

A nats-server, a controller and a Docker agent run as separate processes (as in ``bench_cli.py``). For each
trial a fresh ``drover apply -f`` process is started and, in this process, watched: the service record and
the assignment (KV watches), the engine's container events (create/start), the agent's heartbeats, and the
API's ``get_containers`` polled every 50 ms (what ``bench_cli.py`` measures). Prints one JSON line per trial
with the times (s) since the CLI was started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cli import DROVER, _node_ready, web_yaml
from common import Api, Nats, compile_bytecode, daemon, engine_idle, remove_labelled, stop_daemon

from drover.shared.aio import spawn


def cpu_s(pid: int) -> float:
    """CPU seconds (user + sys) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def trial(
    api: Api, env: dict[str, str], cluster: str, name: str, workdir: Path, replicas: int, pids: dict[str, int],
    drover: list[str],
) -> dict[str, Any]:
    import aiodocker

    from drover.shared import hbwire, wire

    marks: dict[str, float] = {}
    t0 = 0.0

    def mark(key: str) -> None:
        marks.setdefault(key, round(time.monotonic() - t0, 3))

    docker = aiodocker.Docker()
    js = api.nc.jetstream()
    svc_kv = await js.key_value(api.names.services_bucket)
    asg_kv = await js.key_value(api.names.assignments_bucket)
    svc_w = await svc_kv.watch(name, include_history=False)
    asg_w = await asg_kv.watch(">", include_history=False)
    creates: list[float] = []
    starts: list[float] = []

    async def on_hb(msg: Any) -> None:
        body = wire.decode(msg.data)
        if hbwire.is_parts(body):  # compact heartbeat parts (one node here: a part holds them all)
            found = [hbwire.decode_entry(e) for e in hbwire.entries(body["cs"])]
        else:
            found = body.get("containers") or []
        rows = [c for c in found if c.get("service") == name]
        if rows:
            mark("hb_first_row")
        n = sum(1 for c in rows if c.get("state") == "running")
        if n:
            mark("hb_first_running")
        if n >= replicas:
            mark("hb_all_running")

    sub = await api.nc.subscribe(api.names.heartbeat_all, cb=on_hb)

    async def watch_kv(w: Any, key: str, want: Any) -> None:
        async for e in w:
            if e is None or e.value is None:
                continue
            if want(e):
                mark(key)
                return

    def asg_has(e: Any) -> bool:
        body = wire.decode(e.value)
        old_form = body.get("containers") or []
        return name in (body.get("services") or {}) or any(c.get("service") == name for c in old_form)

    async def events() -> None:
        filters = json.dumps({"type": ["container"], "label": [f"drover.cluster={cluster}"],
                              "event": ["create", "start"]})
        async with docker._query("events", params={"filters": filters}, timeout=None) as resp:
            while True:
                line = await resp.content.readline()
                if not line:
                    return
                ev = json.loads(line)
                if (ev.get("Actor", {}).get("Attributes", {}) or {}).get("drover.service") != name:
                    continue
                t = ev["timeNano"] / 1e9 - (time.time() - time.monotonic()) - t0
                (creates if ev["Action"] == "create" else starts).append(round(t, 3))

    path = workdir / f"{name}.yaml"
    path.write_text(web_yaml(name).replace("replicas: 10", f"replicas: {replicas}"))
    ev_task = spawn(events(), "docker-events")
    await asyncio.sleep(0.3)  # the events stream is open
    cpu0 = {k: cpu_s(p) for k, p in pids.items()}
    cli0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    tasks = [spawn(watch_kv(svc_w, "service_stored", lambda e: True), "watch-service"),
             spawn(watch_kv(asg_w, "assignment_written", asg_has), "watch-assignment")]
    proc = await asyncio.create_subprocess_exec(*drover, "apply", "-f", str(path), env=env,
                                                stdout=asyncio.subprocess.DEVNULL)
    await proc.wait()
    mark("cli_exit")
    cli1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu: dict[str, float] = {"cli": round(cli1.ru_utime - cli0.ru_utime + cli1.ru_stime - cli0.ru_stime, 3)}

    async def running() -> bool:
        rows = await api.call("get_containers", service=name)
        if rows:
            mark("api_first_row")
        return len(rows) == replicas and all(r["state"] == "running" for r in rows)

    await api.wait(running, 120, "all running", interval=0.05)
    mark("api_all_running")
    cpu.update({k: round(cpu_s(p) - cpu0[k], 3) for k, p in pids.items()})
    await asyncio.sleep(0.2)
    for t in [*tasks, ev_task]:
        t.cancel()
    await sub.unsubscribe()
    if creates:
        marks["docker_create_first"], marks["docker_create_last"] = min(creates), max(creates)
    if starts:
        marks["docker_start_first"], marks["docker_start_last"] = min(starts), max(starts)
    await docker.close()
    await api.call("delete", names=[name])
    await api.wait(lambda: _gone(api, name), 120, "replicas removed")
    await engine_idle(f"drover.service={name}")  # the next trial starts on an engine done removing
    return {**dict(sorted(marks.items(), key=lambda kv: kv[1])), "cpu_s": cpu}


async def _gone(api: Api, name: str) -> bool:
    return not await api.call("get_containers", service=name)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--replicas", type=int, default=10)
    ap.add_argument("--python", default=None,
                    help="run the CLI, controller and agent as PYTHON -m drover (e.g. another tree's venv)")
    args = ap.parse_args()
    compile_bytecode()
    drover = [args.python, "-m", "drover"] if args.python else [DROVER]
    cluster = f"tr{uuid.uuid4().hex[:6]}"
    workdir = Path(tempfile.mkdtemp(prefix="drover-trace-"))
    nats = Nats()
    env = {**os.environ, "DROVER_NATS": nats.url, "DROVER_CLUSTER": cluster, "DROVER_HOME": str(workdir / "home")}
    ctl = daemon("controller", "--nats", nats.url, "--cluster", cluster, cmd=drover)
    agent = daemon("agent", "--nats", nats.url, "--cluster", cluster, "--node", "trace", "--address", "127.0.0.1",
                   cmd=drover)
    totals: list[float] = []
    try:
        async with Api(nats.url, cluster) as api:
            await api.wait(lambda: _node_ready(api), 30, "agent registered")
            pids = {"controller": ctl.pid, "agent": agent.pid, "nats": nats.proc.pid}
            for proc in ("dockerd", "containerd"):
                found = subprocess.run(["pgrep", "-x", proc], capture_output=True, text=True).stdout.split()
                if found:
                    pids[proc] = int(found[0])
            for i in range(args.trials):
                marks = await trial(api, env, cluster, f"t{i}", workdir, args.replicas, pids, drover)
                totals.append(marks["api_all_running"])
                print(json.dumps({"load": os.getloadavg()[0], **marks}), flush=True)
    finally:
        stop_daemon(agent)
        stop_daemon(ctl)
        remove_labelled(f"drover.cluster={cluster}")
        nats.stop()
    print(json.dumps({"median_all_running_s": round(statistics.median(totals), 3)}))


if __name__ == "__main__":
    asyncio.run(main())
