"""CLI start-up and apply → 10 running against Docker Swarm on the same engine, in one run.

    .venv/bin/python bench/bench_cli.py [--runs 10] [--trials 3] [--no-swarm] [--spec legacy|plain|limits]

1. Wall time of ``drover --help``, ``drover get --help``, an argument error and ``drover get services``
   (against a live controller), each the median of ``--runs`` runs of a fresh process.
2. ``drover apply -f web.yaml`` (the real CLI, a real agent on the local Docker engine) → 10 replicas
   running, against ``docker service create --detach --replicas 10`` → 10 tasks running. Both are the user's
   command as a fresh process, then polled in-process (NATS API / Docker API) every 50 ms. After each trial
   the engine is left to remove that trial's containers before the next trial starts (Swarm's take about
   10 s: busybox's sleep ignores SIGTERM), so that no trial shares the engine with the previous one's removal.
   Swarm is initialised with ``--advertise-addr 127.0.0.1`` only when the engine is not in a swarm already
   (if it is, someone else uses it: the Swarm half is skipped), and left afterwards.

   ``--spec`` says what the 10 replicas are, on both sides:
   - ``legacy`` (default, as in the earlier rows of docs/BENCHMARKS.md): drover's service has a 0.01 cpu and
     8Mi memory limit (drover always runs an init), Swarm's has neither limit nor init;
   - ``plain``: no limits; an init on both (``docker service create --init``);
   - ``limits``: 0.15 cpu (ten replicas' requests fit on a 2-core host) and 64Mi memory, and an init, on both
     (``--init --limit-cpu 0.15 --limit-memory 64M``).

Everything runs on 127.0.0.1 against the local engine and the local/busybox image.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import VENV_BIN, Api, Nats, compile_bytecode, daemon, docker, engine_idle, remove_labelled, stop_daemon

DROVER = str(VENV_BIN / "drover")
SLEEP = ["sleep", "3600"]


def wall(cmd: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    """(median wall time, median CPU time user+sys) of ``runs`` fresh processes. The CPU time says what
    the command costs even when the machine is shared and busy (wall time then includes waiting for a core)."""
    times, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return round(statistics.median(times), 3), round(statistics.median(cpus), 3)


# The replicas' resources per --spec, for drover's manifest and Swarm's flags (an init on both except legacy).
DROVER_RESOURCES = {"legacy": "{cpu: 0.01, memory: 8Mi}", "plain": None, "limits": "{cpu: 0.15, memory: 64Mi}"}
SWARM_FLAGS = {"legacy": [], "plain": ["--init"], "limits": ["--init", "--limit-cpu", "0.15", "--limit-memory", "64M"]}


def web_yaml(name: str, spec: str = "legacy") -> str:
    resources = DROVER_RESOURCES[spec]
    return (f"apiVersion: drover/v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n"
            f"  image: local/busybox:latest\n  command: {json.dumps(SLEEP)}\n  replicas: 10\n"
            + (f"  resources: {resources}\n" if resources else "") + "  stop_grace: 1s\n")


async def drover_apply_10(
    api: Api, env: dict[str, str], name: str, workdir: Path, drover: list[str], spec: str = "legacy",
) -> float:
    path = workdir / f"{name}.yaml"
    path.write_text(web_yaml(name, spec))
    t0 = time.monotonic()
    subprocess.run([*drover, "apply", "-f", str(path)], env=env, check=True, stdout=subprocess.DEVNULL)

    async def running() -> bool:
        rows = await api.call("get_containers", service=name)
        return len(rows) == 10 and all(r["state"] == "running" for r in rows)

    await api.wait(running, 120, "10 replicas running", interval=0.05)
    took = time.monotonic() - t0
    await api.call("delete", names=[name])
    await api.wait(lambda: _gone(api, name), 120, "replicas removed")
    await engine_idle(f"drover.service={name}")
    return took


async def _gone(api: Api, name: str) -> bool:
    return not await api.call("get_containers", service=name)


async def swarm_create_10(name: str, spec: str = "legacy") -> float:
    import aiodocker

    client = aiodocker.Docker()
    try:
        t0 = time.monotonic()
        docker("service", "create", "--detach", "--quiet", "--replicas", "10", "--name", name,
               "--label", "drover-bench=swarm", *SWARM_FLAGS[spec], "local/busybox:latest", *SLEEP)
        while time.monotonic() - t0 < 120:
            tasks = await client.tasks.list(filters={"service": name, "desired-state": "running"})
            if sum(1 for t in tasks if t["Status"]["State"] == "running") >= 10:
                return time.monotonic() - t0
            await asyncio.sleep(0.05)
        raise TimeoutError("swarm service not running within 120 s")
    finally:
        subprocess.run(["docker", "service", "rm", name], capture_output=True, check=False)
        await client.close()
        # Swarm stops its tasks after the command returns (sleep as PID 1 ignores SIGTERM: about 10 s).
        await engine_idle(f"com.docker.swarm.service.name={name}")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--no-swarm", action="store_true")
    ap.add_argument("--spec", choices=sorted(DROVER_RESOURCES), default="legacy",
                    help="what the 10 replicas are, on both sides (see the module's docstring)")
    ap.add_argument("--python", default=None,
                    help="run the CLI, controller and agent as PYTHON -m drover (e.g. another tree's venv)")
    args = ap.parse_args()
    compile_bytecode()
    drover = [args.python, "-m", "drover"] if args.python else [DROVER]
    cluster = f"cli{uuid.uuid4().hex[:6]}"
    workdir = Path(tempfile.mkdtemp(prefix="drover-bench-cli-"))
    nats = Nats()
    env = {**os.environ, "DROVER_NATS": nats.url, "DROVER_CLUSTER": cluster, "DROVER_HOME": str(workdir / "home")}
    ctl = daemon("controller", "--nats", nats.url, "--cluster", cluster, cmd=drover)
    agent = daemon("agent", "--nats", nats.url, "--cluster", cluster, "--node", "bench-cli", "--address", "127.0.0.1",
                   cmd=drover)
    out: dict[str, object] = {}
    swarm_times: list[float] = []
    drover_times: list[float] = []
    try:
        async with Api(nats.url, cluster) as api:
            await api.wait(lambda: _node_ready(api), 30, "agent registered")
            await api.call("apply", manifests=[json.loads(json.dumps(_svc("idle", 3)))])
            # (wall s, cpu s) medians
            out["help"] = wall([*drover, "--help"], env, args.runs)
            out["get_help"] = wall([*drover, "get", "--help"], env, args.runs)
            out["bad_argument"] = wall([*drover, "get", "bogus"], env, args.runs)
            out["get_services"] = wall([*drover, "get", "services"], env, args.runs)
            out["python_startup"] = wall([sys.executable, "-c", "pass"], env, args.runs)
            out["load_average"] = os.getloadavg()[0]
            await api.call("delete", names=["idle"])
            swarm = not args.no_swarm and docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip() == "inactive"
            if swarm:
                docker("swarm", "init", "--advertise-addr", "127.0.0.1")
            try:
                for trial in range(args.trials):
                    drover_times.append(await drover_apply_10(api, env, f"w{trial}", workdir, drover, args.spec))
                    if swarm:
                        swarm_times.append(await swarm_create_10(f"drover-bench-{cluster}-{trial}", args.spec))
            finally:
                if swarm:
                    subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True, check=False)
    finally:
        stop_daemon(agent)
        stop_daemon(ctl)
        remove_labelled(f"drover.cluster={cluster}")
        nats.stop()
    out["spec"] = args.spec
    out["drover_apply_10_s"] = [round(t, 2) for t in drover_times]
    out["swarm_create_10_s"] = [round(t, 2) for t in swarm_times]
    if drover_times and swarm_times:
        out["ratio_drover_swarm"] = round(statistics.median(drover_times) / statistics.median(swarm_times), 2)
    print(json.dumps(out))


def _svc(name: str, replicas: int) -> dict[str, object]:
    return {"apiVersion": "drover/v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"image": "local/busybox:latest", "command": SLEEP, "replicas": replicas,
                     "resources": {"cpu": 0.01, "memory": "8Mi"}, "stop_grace": "1s"}}


async def _node_ready(api: Api) -> bool:
    return any(n["status"] == "ready" for n in await api.call("get_nodes"))


if __name__ == "__main__":
    asyncio.run(main())
