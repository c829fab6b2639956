"""A small reader over a foreign manifest's mapping that records every key it used.

Conversions read the fields they honour through ``Fields``; ``done()`` then reports every other key as
"not supported by drover", so a Deployment or Compose field that cannot be honoured is never silently
dropped. Problems are ``(path, message)`` pairs with the foreign document's own path
(``spec.template.spec.containers[0].volumeMounts``).
"""

from __future__ import annotations

import re
from typing import Any

from drover.shared.manifest_errors import format_loc

Problem = tuple[str, str]

_SIMPLE = re.compile(r"[A-Za-z0-9_-]+")


def join(path: str, key: str | int) -> str:
    """``join("spec", "ports")`` → ``spec.ports``; ``join("spec.ports", 0)`` → ``spec.ports[0]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    tail = format_loc([key])
    if not path:
        return tail
    return f"{path}{tail}" if tail.startswith("[") else f"{path}.{tail}"


class Fields:
    """The keys of one mapping at ``path``; ``ok`` is False (and a problem recorded) if it is no mapping."""

    def __init__(self, data: Any, path: str, problems: list[Problem], *, ignore: tuple[str, ...] = ()) -> None:
        self.path = path
        self.problems = problems
        self.ok = isinstance(data, dict)
        self.data: dict[Any, Any] = data if isinstance(data, dict) else {}
        if not self.ok and data is not None:
            problems.append((path, f"must be a mapping, not {type(data).__name__}"))
        self._used: set[Any] = set(ignore)

    def at(self, key: str | int) -> str:
        return join(self.path, key)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` (marked as used), or ``default`` when absent or null."""
        self._used.add(key)
        value = self.data.get(key)
        return default if value is None else value

    def sub(self, key: str) -> Fields:
        """The mapping under ``key`` as ``Fields`` (empty when absent)."""
        return Fields(self.get(key), self.at(key), self.problems)

    def items(self, key: str) -> list[tuple[str, Any]]:
        """The list under ``key`` as ``(path of item, item)`` pairs (a problem when it is no list)."""
        value = self.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problems.append((self.at(key), "must be a list"))
            return []
        return [(join(self.at(key), i), item) for i, item in enumerate(value)]

    def number(self, key: str, *, minimum: float = 0, integer: bool = True) -> float | int | None:
        value = self.get(key)
        if value is None:
            return None
        wrong_kind = isinstance(value, bool) or not isinstance(value, int if integer else (int, float))
        if wrong_kind or not isinstance(value, (int, float)) or value < minimum:
            what = "an integer" if integer else "a number"
            self.problems.append((self.at(key), f"must be {what} >= {minimum:g}"))
            return None
        return value

    def text(self, key: str) -> str | None:
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.problems.append((self.at(key), "must be a string"))
            return None
        return value

    def refuse(self, key: str, why: str) -> None:
        """Record ``key`` (when present) as a field drover cannot honour, saying ``why``."""
        self._used.add(key)
        if key in self.data:
            self.problems.append((self.at(key), why))

    def accept(self, key: str, *defaults: Any) -> None:
        """``key`` is fine when absent or equal to one of ``defaults`` (what the foreign tool writes anyway)."""
        self._used.add(key)
        if key in self.data and self.data[key] not in (None, *defaults):
            self.problems.append((self.at(key), f"not supported by drover unless {' or '.join(map(repr, defaults))}"))

    def done(self, hint: str = "", *, strict: bool = False) -> None:
        """Report every key that was not read as unsupported. An empty value asks for nothing and passes,
        unless ``strict`` (where the key itself is the request, as ``emptyDir: {}``)."""
        for key, value in self.data.items():
            if key not in self._used and (strict or value not in (None, {}, [])):
                self.problems.append((self.at(str(key)), f"not supported by drover{hint}"))
