"""Pure: the ContainerStatus an agent reports for one replica, and for all of its assignment."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence

from drover.agent.drivers.base import CREATED, RUNNING, Observed, container_name, spec_ports
from drover.agent.reconcile import RestartState, crash_looping
from drover.shared.manifest import ServiceSpec
from drover.shared.models import AssignedContainer, Assignment, ContainerState, ContainerStatus


def port_names(spec: ServiceSpec, port_map: dict[int, int]) -> tuple[int | None, dict[str, int]]:
    """(host port of the first spec port, {port name: host port})."""
    ports: dict[str, int] = {}
    first: int | None = None
    for name, cport in spec_ports(spec):
        host = port_map.get(cport)
        if host is None:
            continue
        ports[name] = host
        if first is None:
            first = host
    return first, ports


def has_health(spec: ServiceSpec) -> bool:
    return spec.health is not None


def container_status(
    a: AssignedContainer,
    obs: Observed | None,
    state: RestartState,
    now: float,
    *,
    probe_ok: bool | None = None,
    busy: bool = False,
    message: str = "",
) -> ContainerStatus:
    """``probe_ok``: the health probe's verdict (None: not probed yet); ``busy``: the agent is creating it."""
    st = ContainerStatus(
        id=a.id,
        name=container_name(a.service, a.id),
        service=a.service,
        revision=a.revision,
        restarts=a.restarts + state.restarts,
        message=message,
    )
    if obs is None:
        st.state = ContainerState.STARTING if busy else ContainerState.PENDING
        st.message = message or state.message
        return st
    st.container_id = obs.container_id
    st.name = obs.name or st.name
    st.host_port, st.ports = port_names(a.spec, obs.port_map)
    st.started_at = obs.started_at
    looping = crash_looping(state, obs, now)
    if obs.state == RUNNING:
        st.state = ContainerState.CRASH_LOOP if looping else ContainerState.RUNNING
        st.ready = bool(probe_ok) if has_health(a.spec) else True
        if looping:
            st.message = message or f"restarted {state.streak} times in a row"
    elif obs.state == CREATED:
        st.state = ContainerState.STARTING
    else:
        st.state = ContainerState.CRASH_LOOP if looping else ContainerState.EXITED
        st.exit_code = obs.exit_code
        if not st.message:
            st.message = f"exited with code {obs.exit_code}" + (" (out of memory)" if obs.oom else "")
    return st


def observed_status(obs: Observed) -> ContainerStatus:
    """Status of a container the agent has no assignment for (yet)."""
    return ContainerStatus(
        id=obs.id,
        container_id=obs.container_id,
        name=obs.name,
        service=obs.service,
        revision=obs.revision,
        state=ContainerState.RUNNING if obs.state == RUNNING else ContainerState.EXITED,
        ready=False,
        started_at=obs.started_at,
        exit_code=None if obs.state == RUNNING else obs.exit_code,
    )


def rank(o: Observed) -> tuple[int, float]:
    """Which of a replica's containers to report: a running one first, then the latest started."""
    return (1 if o.state == RUNNING else 0, o.started_at or 0.0)


def node_statuses(
    assignment: Assignment | None,
    observed: Sequence[Observed],
    restart_state: Mapping[str, RestartState],
    now: float,
    *,
    probe_result: Callable[[str], bool | None] | None = None,
    busy: Collection[str] = (),
) -> tuple[list[ContainerStatus], list[tuple[AssignedContainer, Observed]]]:
    """(the statuses a node reports, the running replicas to health-probe).

    Without an assignment (not read yet) every observed container is reported as it is. ``probe_result``
    gives a container id's probe verdict (None: no probing at all); ``busy``: replica ids being created.
    """
    if assignment is None:
        return [observed_status(o) for o in observed], []
    by_id: dict[str, list[Observed]] = defaultdict(list)
    for o in observed:
        by_id[o.id].append(o)
    statuses: list[ContainerStatus] = []
    probe_targets: list[tuple[AssignedContainer, Observed]] = []
    for a in assignment.containers:
        match = [o for o in by_id.get(a.id, []) if o.revision == a.revision and o.service == a.service]
        obs = max(match, key=rank) if match else None
        probe_ok = None
        if obs is not None and probe_result is not None:
            probe_ok = probe_result(obs.container_id)
            if obs.running:
                probe_targets.append((a, obs))
        st = restart_state.get(a.id, RestartState())
        statuses.append(container_status(a, obs, st, now, probe_ok=probe_ok, busy=a.id in busy))
    return statuses, probe_targets
