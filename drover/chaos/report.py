"""The chaos report: the contract's JSON and a readable summary with a per-fault timeline (pure)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from drover.chaos.checker import Checks


@dataclass
class FaultRecord:
    at: float  # s from the start of the run
    kind: str
    target: str
    ends: float  # when it was undone (its start for instant faults)
    cut_node: str | None = None
    recovery_s: float | None = None  # end → the cluster converged again (None: not within the run)


def report_json(seed: int, duration: float, faults: list[FaultRecord], checks: Checks) -> dict[str, Any]:
    return {
        "seed": seed,
        "duration_s": round(duration, 2),
        "faults": [{"time": round(f.at, 2), "kind": f.kind, "target": f.target} for f in faults],
        "checks": checks.to_json(),
        "passed": checks.passed,
    }


def overlapped(f: FaultRecord, faults: list[FaultRecord]) -> bool:
    """Another fault began while the cluster was still recovering from ``f`` (between its end and its
    recovery): then ``f``'s recovery time includes that fault's."""
    if f.recovery_s is None:
        return False
    return any(g is not f and f.ends <= g.at < f.ends + f.recovery_s for g in faults)


def recovery_by_kind(faults: list[FaultRecord]) -> dict[str, dict[str, Any]]:
    """Per kind: count, and the median and max recovery time over faults that recovered; ``overlapped``
    counts those whose recovery included another fault, ``max_alone_s`` is the max over the others."""
    out: dict[str, dict[str, Any]] = {}
    for kind in sorted({f.kind for f in faults}):
        mine = [f for f in faults if f.kind == kind]
        times = [f.recovery_s for f in mine if f.recovery_s is not None]
        alone = [f.recovery_s for f in mine if f.recovery_s is not None and not overlapped(f, faults)]
        out[kind] = {
            "count": len(mine),
            "median_s": round(statistics.median(times), 2) if times else None,
            "max_s": round(max(times), 2) if times else None,
            "unrecovered": len(mine) - len(times),
            "overlapped": len(times) - len(alone),
            "max_alone_s": round(max(alone), 2) if alone else None,
        }
    return out


@dataclass(frozen=True)
class Chain:
    """Faults that followed one another before the cluster had recovered from the earlier ones (one fault
    alone is a chain of one). ``after_s``: from the end of the chain's last fault to the cluster converged
    again (None: not within the run) — what the chain's first faults' recovery times also contain, together
    with every later fault of the chain while it lasted."""

    faults: list[FaultRecord]
    after_s: float | None

    @property
    def start(self) -> float:
        return self.faults[0].at

    @property
    def last_end(self) -> float:
        return max(f.ends for f in self.faults)

    @property
    def span_s(self) -> float:
        """From the chain's first fault to its last one's end: how long faults came back to back."""
        return self.last_end - self.start


def chains(faults: list[FaultRecord]) -> list[Chain]:
    """The run's faults as chains (see ``Chain``), in order: a fault joins the chain before it when it began
    before every fault of that chain had recovered (a fault that never recovered keeps the chain open)."""
    out: list[Chain] = []
    current: list[FaultRecord] = []
    recovered_by = 0.0  # when every fault of ``current`` had recovered (inf: one never did)
    for f in sorted(faults, key=lambda g: (g.at, g.ends)):
        if current and f.at >= recovered_by:
            out.append(_chain(current))
            current, recovered_by = [], 0.0
        current.append(f)
        recovered_by = max(recovered_by, f.ends + f.recovery_s if f.recovery_s is not None else float("inf"))
    if current:
        out.append(_chain(current))
    return out


def _chain(faults: list[FaultRecord]) -> Chain:
    last = max(faults, key=lambda f: f.ends)
    return Chain(list(faults), last.recovery_s)


def chain_summary(faults: list[FaultRecord]) -> dict[str, Any]:
    """For the report: how many chains (of several faults), the longest span of back-to-back faults, and the
    longest time from a chain's last fault to convergence (None: a chain never converged)."""
    cs = chains(faults)
    several = [c for c in cs if len(c.faults) > 1]
    afters = [c.after_s for c in cs]
    known = [a for a in afters if a is not None]
    return {
        "chains": len(cs),
        "of_several_faults": len(several),
        "longest_span_s": round(max((c.span_s for c in several), default=0.0), 2),
        "max_after_last_fault_s": round(max(known), 2) if known and len(known) == len(afters) else None,
    }


def _secs(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}s"


def summary(seed: int, duration: float, faults: list[FaultRecord], checks: Checks, notes: list[str]) -> list[str]:
    lines = [f"chaos: seed {seed}, {duration:.0f}s, {len(faults)} faults"]
    lines.append(f"  {'TIME':>7}  {'KIND':<17} {'TARGET':<26} {'HELD':>6} {'RECOVERED':>9}")
    for f in faults:
        held = _secs(f.ends - f.at) if f.ends > f.at else "-"
        lines.append(f"  {f.at:>6.1f}s  {f.kind:<17} {f.target:<26} {held:>6} {_secs(f.recovery_s):>9}")
    lines.append("recovery by kind:")
    for kind, r in recovery_by_kind(faults).items():
        lines.append(
            f"  {kind:<17} {r['count']}x  median {_secs(r['median_s'])}  max {_secs(r['max_s'])}"
            + (f"  ({r['overlapped']} overlapped by another fault; max of the others {_secs(r['max_alone_s'])})"
               if r["overlapped"] else "")
            + (f"  ({r['unrecovered']} not recovered before the end)" if r["unrecovered"] else "")
        )
    c = chain_summary(faults)
    if c["of_several_faults"]:
        lines.append(
            f"  chains of overlapping faults: {c['of_several_faults']} (faults back to back for up to "
            f"{c['longest_span_s']:.1f}s); from each chain's last fault to convergence: max "
            f"{_secs(c['max_after_last_fault_s'])}"
        )
    total = checks.requests_ok + checks.requests_failed
    share = 100.0 * checks.requests_ok / total if total else 100.0
    lines += [
        "checks:",
        f"  desired state lost:   {len(checks.desired_state_lost)}",
        *(f"    {x}" for x in checks.desired_state_lost),
        f"  duplicate replicas:   {len(checks.duplicate_replicas)}",
        *(f"    {x}" for x in checks.duplicate_replicas),
        f"  unconverged services: {len(checks.unconverged_services)}",
        *(f"    {x}" for x in checks.unconverged_services),
        f"  converged after the last fault in {checks.max_converge_s:.1f}s (limit 10s)",
        f"  requests: {checks.requests_ok} ok, {checks.requests_failed} failed ({share:.2f}% ok, need 99%)",
        *(f"note: {n}" for n in notes),
        "PASSED" if checks.passed else "FAILED",
    ]
    return lines


__all__ = ["Chain", "FaultRecord", "chain_summary", "chains", "overlapped", "recovery_by_kind", "report_json",
           "summary"]
