"""What keeps each service from converging, by source (placement, reconcile, autoscale): the level shown as the
service's status message, and the edge told once as an event when a problem appears or its text changes."""

from __future__ import annotations

from collections.abc import Mapping

# Sources whose problem means the service cannot reach its desired state (its status is not "available").
BLOCKING = ("reconcile", "placement")


class ServiceProblems:
    def __init__(self) -> None:
        self._by_service: dict[str, dict[str, str]] = {}

    def update(self, source: str, current: Mapping[str, str]) -> list[tuple[str, str]]:
        """Replace every problem of ``source`` with ``current`` (service -> message); return the (service,
        message) pairs that are new or changed, which are the ones worth an event."""
        fresh: list[tuple[str, str]] = []
        for service, problems in list(self._by_service.items()):
            if source in problems and service not in current:
                del problems[source]
                if not problems:
                    del self._by_service[service]
        for service, message in current.items():
            problems = self._by_service.setdefault(service, {})
            if problems.get(source) != message:
                fresh.append((service, message))
            problems[source] = message
        return fresh

    def set(self, source: str, service: str, message: str | None) -> bool:
        """Set (or with None clear) one service's problem of ``source``; True when it is new or changed."""
        problems = self._by_service.get(service, {})
        if message is None:
            problems.pop(source, None)
            if not problems:
                self._by_service.pop(service, None)
            return False
        changed = problems.get(source) != message
        self._by_service.setdefault(service, {})[source] = message
        return changed

    def blocking(self) -> dict[str, str]:
        """service -> message, for services that cannot converge (placement or reconcile problems)."""
        out = {}
        for service, problems in self._by_service.items():
            msgs = [problems[s] for s in BLOCKING if s in problems]
            if msgs:
                out[service] = "; ".join(msgs)
        return out

    def messages(self) -> dict[str, str]:
        """service -> every current problem, in a fixed order of sources."""
        return {s: "; ".join(p[k] for k in sorted(p)) for s, p in self._by_service.items() if p}
