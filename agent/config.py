"""Agent configuration; capacity defaults to what the host has."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def host_cpu() -> float:
    try:
        return float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return float(os.cpu_count() or 1)


def host_memory() -> int:
    """MemTotal from /proc/meminfo in bytes (0 when it cannot be read)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass
class AgentConfig:
    nats_url: str
    node: str
    creds: str | None = None  # NATS credentials (or nkey seed) file; None: anonymous
    ca: str | None = None  # the cluster CA (PEM): TLS to NATS; None: plain
    cluster: str = "default"
    address: str = "127.0.0.1"
    labels: dict[str, str] = field(default_factory=dict)
    driver: str = "docker"  # docker | process | sim
    cpu: float | None = None  # cores offered for placement; host's when None
    memory: int | None = None  # bytes offered for placement; host's when None
    heartbeat_interval: float = 1.0
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    resync_interval: float = 5.0  # level-triggered re-read of the assignment
    pull_images: bool = True  # docker: pull images as the spec's `pull` says (False: never pull)
    docker_config: str | None = None  # registry credentials (a Docker config.json); None: ~/.docker/config.json
    gossip_key: bytes | None = None  # cluster gossip key; fetched from (or created in) the KV store when None
    proxy_strategy: str = "round-robin"  # per-node proxy: round-robin | least-conn
    dns_port: int | None = None  # UDP port of the <service>.drover responder on `address`; None = off, 0 = free
    nats_source: str | None = None  # local address of the NATS connections (lets a lab cut exactly this agent)
    data_dir: str | None = None  # the agent's state (the highest accepted term); None = kept nowhere

    def __post_init__(self) -> None:
        if self.cpu is None:
            self.cpu = host_cpu()
        if self.memory is None:
            self.memory = host_memory()

    @property
    def capacity_cpu(self) -> float:
        return float(self.cpu if self.cpu is not None else host_cpu())

    @property
    def capacity_memory(self) -> int:
        return int(self.memory if self.memory is not None else host_memory())
