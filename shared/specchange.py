"""A short, human summary of what changed between two revisions of a spec (the ``CHANGE`` column of
``rollout history``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from drover.shared.manifest import ServiceSpec, revision_view


def _short(value: Any, width: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= width else text[: width - 1] + "…"


def describe_change(
    old: ServiceSpec | Mapping[str, Any] | None, new: ServiceSpec | Mapping[str, Any], width: int = 60
) -> str:
    """A short summary of what changed between two specs, typed or their JSON form (``replicas`` ignored),
    ≤ ``width`` chars.

    ``image=local/busybox:v2``, ``command, env.GREETING``; ``initial`` without an old spec, ``no change``
    when the revisions are equal.
    """
    if not old:
        return "initial"
    items: list[str] = []
    old_view, new_view = revision_view(old), revision_view(new)
    for key in sorted(set(old_view) | set(new_view), key=lambda k: (k != "image", k)):
        before, after = old_view.get(key), new_view.get(key)
        if before == after:
            continue
        if key == "image":
            items.append(f"image={_short(after, max(width - 20, 10))}")
        elif key == "env" and isinstance(before or {}, dict) and isinstance(after or {}, dict):
            b, a = before or {}, after or {}
            items.extend(f"env.{k}" for k in sorted(set(b) | set(a)) if b.get(k) != a.get(k))
        else:
            items.append(key)
    if not items:
        return "no change"
    out = items[0]
    for i, item in enumerate(items[1:], start=1):
        rest = len(items) - i - 1
        tail = f", +{rest} more" if rest else ""
        if len(out) + 2 + len(item) + len(tail) > width:
            return _short(f"{out}, +{len(items) - i} more", width)
        out = f"{out}, {item}"
    return _short(out, width)
