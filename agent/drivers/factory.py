"""Driver by name: docker (aiodocker), process (plain subprocesses) or sim (hollow, in memory)."""

from __future__ import annotations

from drover.agent.drivers.base import Driver

DRIVERS = ("docker", "process", "sim")


def make_driver(name: str, cluster: str, node: str, *, pull: bool = True) -> Driver:
    if name == "docker":
        from drover.agent.drivers.docker import DockerDriver

        return DockerDriver(cluster, node, pull=pull)
    if name == "sim":
        from drover.agent.drivers.sim import SimDriver

        return SimDriver(cluster, node)
    if name == "process":
        from drover.agent.drivers.process import ProcessDriver

        return ProcessDriver(cluster, node)
    raise ValueError(f"unknown driver {name!r} (one of {', '.join(DRIVERS)})")
