"""iptables rules of the ``partition`` and ``gossip-partition`` faults, each tagged with a comment naming
the chaos process, so that they are removed when chaos stops — and, should a chaos process ever die
without its clean-up (SIGKILL), swept by the next run.

Rules go in INPUT: loopback packets traverse it after OUTPUT, and a DROP there is silent for both ends
(a DROP in OUTPUT makes the sender's own syscalls fail with EPERM, which no real partition does).
"""

from __future__ import annotations

import asyncio
import os
import re

TAG_PREFIX = "drover-chaos-"
CHAIN = "INPUT"


def tag(pid: int | None = None) -> str:
    return f"{TAG_PREFIX}{pid if pid is not None else os.getpid()}"


def nats_partition_rules(source: str, nats_ports: list[int], tag_: str) -> list[list[str]]:
    """Drop one agent's TCP traffic to and from the nats-servers: the agent's connections leave from its
    own ``source`` address; the servers listen on 127.0.0.1 at ``nats_ports``."""
    ports = ",".join(str(p) for p in sorted(nats_ports))
    common = ["-p", "tcp", "-m", "multiport"]
    mark = ["-m", "comment", "--comment", tag_, "-j", "DROP"]
    return [
        [CHAIN, *common, "--dports", ports, "-s", source, "-d", "127.0.0.1", *mark],
        [CHAIN, *common, "--sports", ports, "-s", "127.0.0.1", "-d", source, *mark],
    ]


def gossip_partition_rules(a: str, b: str, tag_: str) -> list[list[str]]:
    """Drop UDP between two agents' addresses (their gossip), both ways."""
    mark = ["-m", "comment", "--comment", tag_, "-j", "DROP"]
    return [
        [CHAIN, "-p", "udp", "-s", a, "-d", b, *mark],
        [CHAIN, "-p", "udp", "-s", b, "-d", a, *mark],
    ]


def stale_rules(listing: str, alive: set[int] | None = None) -> list[list[str]]:
    """From ``iptables -S`` output: the chaos rules whose owner process is gone, as ``-D`` arguments."""
    out = []
    for line in listing.splitlines():
        m = re.search(rf'--comment "?{TAG_PREFIX}(\d+)"?', line)
        if not line.startswith(f"-A {CHAIN} ") or not m:
            continue
        pid = int(m.group(1))
        if (alive is not None and pid in alive) or (alive is None and _alive(pid)):
            continue
        out.append(line.split()[1:])  # drop "-A"; quotes never appear in our tags
    return [[arg.strip('"') for arg in rule] for rule in out]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def iptables(*args: str) -> None:
    """Run iptables (``-w``: wait for the xtables lock that Docker also takes)."""
    proc = await asyncio.create_subprocess_exec(
        "iptables", "-w", "5", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"iptables {' '.join(args)}: {err.decode(errors='replace').strip()}")


async def add(rule: list[str]) -> None:
    await iptables("-I", *rule)


async def delete(rule: list[str]) -> None:
    await iptables("-D", *rule)


async def listing() -> str:
    proc = await asyncio.create_subprocess_exec(
        "iptables", "-w", "5", "-S", CHAIN, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await proc.communicate()
    return out.decode(errors="replace")


async def sweep_stale() -> int:
    """Remove rules left by chaos processes that no longer exist; how many."""
    rules = stale_rules(await listing())
    for rule in rules:
        try:
            await delete(rule)
        except RuntimeError:
            pass
    return len(rules)


__all__ = ["add", "delete", "gossip_partition_rules", "nats_partition_rules", "stale_rules", "sweep_stale", "tag"]
