"""The endpoints API (``Names.endpoints``, queue group ``agents``): ``{"service": NAME}`` (optional) →
``{"ok": true, "endpoints": [{"service", "address", "port", "node", "container", "ready", "revision"}]}``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from drover.agent.discovery.keys import endpoint_dict
from drover.agent.gossip import Endpoint
from drover.shared import wire
from drover.shared.errors import WireError

EndpointsOf = Callable[[str | None], list[Endpoint]]


def endpoints_reply(data: bytes, endpoints: EndpointsOf) -> dict[str, Any]:
    """The reply to one request body (empty: every service)."""
    service: str | None = None
    try:
        if data:
            body = wire.decode(data)
            raw = body.get("service")
            if raw is not None and not isinstance(raw, str):
                raise WireError("service must be a string")
            service = raw or None
    except WireError as exc:
        return {"ok": False, "error": str(exc), "code": "invalid"}
    return {"ok": True, "endpoints": [endpoint_dict(e) for e in endpoints(service)]}


async def answer_endpoints(msg: Any, endpoints: EndpointsOf) -> None:
    reply = endpoints_reply(msg.data, endpoints)
    if msg.reply:
        with contextlib.suppress(Exception):
            await msg.respond(wire.encode(reply))
