"""A controller's reply as the CLI reads it, in a module of its own: the lean request path
(``drover.cli.quickreq``) decodes replies without importing the NATS client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drover.shared import wire
from drover.shared.errors import WireError

UNAVAILABLE = "unavailable"  # the controller cannot answer from current state now: ask again (another one)


def is_unavailable(data: bytes) -> bool:
    """Whether a reply says ``unavailable`` (a controller just resumed or reconnected, not yet caught up)."""
    try:
        body = wire.decode(data)
    except WireError:
        return False
    return isinstance(body, dict) and body.get("ok") is False and body.get("code") == UNAVAILABLE


@dataclass
class Reply:
    """A controller's ``ApiReply`` as the CLI reads it, decoded without the schema library (the same
    checks as ``drover.shared.models.ApiReply`` for the fields the CLI uses)."""

    ok: bool
    data: Any = None
    error: str = ""
    code: str = ""
    problems: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_wire(cls, data: bytes) -> Reply:
        body = wire.decode(data)
        ok = body.get("ok")
        if not isinstance(ok, bool):
            raise WireError("ApiReply: ok: a boolean is required")
        error, code, problems = body.get("error") or "", body.get("code") or "", body.get("problems") or []
        if not isinstance(error, str) or not isinstance(code, str):
            raise WireError("ApiReply: error/code: must be strings")
        if not isinstance(problems, list) or not all(isinstance(p, dict) for p in problems):
            raise WireError("ApiReply: problems: must be a list of maps")
        return cls(ok=ok, data=body.get("data"), error=error, code=code, problems=problems)
