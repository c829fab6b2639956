"""Driver by name: docker (aiodocker), process (plain subprocesses) or sim (hollow, in memory)."""

from __future__ import annotations

from drover.agent.drivers.base import Driver

DRIVERS = ("docker", "process", "sim")


def make_driver(
    name: str, cluster: str, node: str, *, pull: bool = True, docker_config: str | None = None
) -> Driver:
    if name == "docker":
        from pathlib import Path

        from drover.agent.drivers.docker import DockerDriver

        return DockerDriver(cluster, node, pull=pull, docker_config=Path(docker_config) if docker_config else None)
    if name == "sim":
        from drover.agent.drivers.sim import SimDriver

        return SimDriver(cluster, node)
    if name == "process":
        from drover.agent.drivers.process import ProcessDriver

        return ProcessDriver(cluster, node)
    raise ValueError(f"unknown driver {name!r} (one of {', '.join(DRIVERS)})")
