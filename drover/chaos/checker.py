"""The invariant checker: a pure function of the recorded history of a chaos run.

It never talks to the cluster: the runner records what it did and saw (acknowledged writes, the desired
state read back at the end, Docker's containers by label, requests, when nodes were cut off and when each
service converged) and :func:`check` decides.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

CONVERGE_LIMIT_S = 10.0
REQUESTS_OK_SHARE = 0.99


@dataclass(frozen=True)
class Write:
    """An apply or scale the chaos run sent: ``acked`` when the controller answered ok, else unknown
    (a timeout may or may not have been applied)."""

    at: float
    service: str
    replicas: int
    revision_token: str  # the env value an apply set ("" for a scale)
    acked: bool


@dataclass(frozen=True)
class Desired:
    """A service's desired state as stored at the end."""

    replicas: int
    revision_token: str


@dataclass(frozen=True)
class Container:
    """A running container of the cluster as Docker lists it (by labels)."""

    service: str
    replica: str  # drover.id
    node: str
    name: str


@dataclass(frozen=True)
class Request:
    at: float  # when it was sent
    node: str
    ok: bool
    ended: float | None = None  # when it was answered or failed (None: at once)

    def overlaps(self, start: float, end: float) -> bool:
        """In flight at some point of [start, end]: a request already on its way through a node's proxy
        when that node was killed or cut off went to a cut-off node, too."""
        return self.at <= end and (self.ended if self.ended is not None else self.at) >= start


@dataclass
class History:
    writes: list[Write] = field(default_factory=list)
    desired_before: dict[str, Desired] = field(default_factory=dict)  # the user's services at the start
    desired_after: dict[str, Desired] = field(default_factory=dict)
    containers: list[Container] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    cut_off: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # node → [(from, until)]
    last_fault_end: float = 0.0
    converged_at: dict[str, float | None] = field(default_factory=dict)  # service → first converged time
    observed_until: float = 0.0  # the last observation: an unconverged service counts as converging until then


@dataclass(frozen=True)
class Checks:
    desired_state_lost: list[str]
    duplicate_replicas: list[str]
    unconverged_services: list[str]
    max_converge_s: float
    requests_ok: int
    requests_failed: int

    @property
    def passed(self) -> bool:
        total = self.requests_ok + self.requests_failed
        return (
            not self.desired_state_lost
            and not self.duplicate_replicas
            and not self.unconverged_services
            and self.max_converge_s <= CONVERGE_LIMIT_S
            and (total == 0 or self.requests_ok >= REQUESTS_OK_SHARE * total)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "desired_state_lost": list(self.desired_state_lost),
            "duplicate_replicas": list(self.duplicate_replicas),
            "unconverged_services": list(self.unconverged_services),
            "max_converge_s": round(self.max_converge_s, 2),
            "requests_ok": self.requests_ok,
            "requests_failed": self.requests_failed,
        }


def lost_writes(writes: list[Write], after: dict[str, Desired]) -> list[str]:
    """Every acknowledged write must be in the final desired state: the last acknowledged write of a
    service, or an unacknowledged one sent after it (which may have landed), is what is stored. For the
    spec the same holds with applies alone: the last acknowledged apply's, or a later apply's (an
    unacknowledged apply sent before it may never have landed: "no responders")."""
    lost: list[str] = []
    by_service: dict[str, list[Write]] = defaultdict(list)
    for w in sorted(writes, key=lambda w: w.at):
        by_service[w.service].append(w)
    for service, ws in sorted(by_service.items()):
        acked = [i for i, w in enumerate(ws) if w.acked]
        if not acked:
            continue
        last = acked[-1]
        allowed = ws[last:]
        stored = after.get(service)
        if stored is None:
            lost.append(f"{service}: acknowledged at {ws[last].at:.1f}s but no longer stored")
            continue
        if not any(stored.replicas == w.replicas for w in allowed):
            lost.append(f"{service}: replicas {stored.replicas} stored, {ws[last].replicas} acknowledged")
        applies = [w for w in ws if w.revision_token]
        acked_applies = [i for i, w in enumerate(applies) if w.acked]
        if not acked_applies:
            continue
        tokens = {w.revision_token for w in applies[acked_applies[-1]:]}
        last_token = applies[acked_applies[-1]].revision_token
        if stored.revision_token not in tokens:
            lost.append(f"{service}: spec {stored.revision_token or '-'} stored, {last_token} acknowledged")
    return lost


def changed_user_services(before: dict[str, Desired], after: dict[str, Desired]) -> list[str]:
    """The user's services keep their desired state through a chaos run."""
    out = []
    for name, d in sorted(before.items()):
        now = after.get(name)
        if now is None:
            out.append(f"{name}: lost")
        elif now.replicas != d.replicas:
            out.append(f"{name}: replicas {d.replicas} before, {now.replicas} after")
    return out


def duplicates(containers: list[Container]) -> list[str]:
    counts = Counter((c.service, c.replica) for c in containers)
    out = []
    for (service, replica), n in sorted(counts.items()):
        if n > 1:
            where = sorted(f"{c.name}@{c.node}" for c in containers if (c.service, c.replica) == (service, replica))
            out.append(f"{service}/{replica} runs {n} times: {', '.join(where)}")
    return out


def wrong_counts(containers: list[Container], desired: dict[str, Desired]) -> list[str]:
    running = Counter(c.service for c in containers)
    out = []
    for name in sorted(set(desired) | set(running)):
        want = desired[name].replicas if name in desired else 0
        if running[name] != want:
            out.append(f"{name}: {running[name]} running, {want} desired")
    return out


def counted(requests: list[Request], cut_off: dict[str, list[tuple[float, float]]]) -> tuple[int, int]:
    """(ok, failed) over requests to proxies of nodes that were not cut off at the time."""
    ok = failed = 0
    for r in requests:
        if any(r.overlaps(start, end) for start, end in cut_off.get(r.node, [])):
            continue
        if r.ok:
            ok += 1
        else:
            failed += 1
    return ok, failed


def failed_spans(requests: list[Request], cut_off: dict[str, list[tuple[float, float]]]) -> list[str]:
    """Where the counted failures were: per node, each run of failures within 2 s of each other."""
    out: list[str] = []
    for node in sorted({r.node for r in requests}):
        times = [
            r.at for r in requests
            if r.node == node and not r.ok and not any(r.overlaps(a, b) for a, b in cut_off.get(node, []))
        ]
        start = prev = None
        count = 0
        for t in [*sorted(times), float("inf")]:
            if prev is not None and t - prev > 2.0:
                out.append(f"{node}: {count} failed request(s) {start:.1f}s-{prev:.1f}s")
                start, count = None, 0
            if t == float("inf"):
                break
            start = t if start is None else start
            prev, count = t, count + 1
    return out


def check(h: History) -> Checks:
    unconverged = [f"{s}: not converged" for s, at in sorted(h.converged_at.items()) if at is None]
    unconverged += wrong_counts(h.containers, h.desired_after)
    times = [
        max(0.0, (at if at is not None else max(h.observed_until, h.last_fault_end)) - h.last_fault_end)
        for at in h.converged_at.values()
    ]
    ok, failed = counted(h.requests, h.cut_off)
    lost = lost_writes(h.writes, h.desired_after) + changed_user_services(h.desired_before, h.desired_after)
    return Checks(
        desired_state_lost=lost,
        duplicate_replicas=duplicates(h.containers),
        unconverged_services=unconverged,
        max_converge_s=max(times, default=0.0),
        requests_ok=ok,
        requests_failed=failed,
    )


__all__ = ["Checks", "Container", "Desired", "History", "Request", "Write", "check"]
