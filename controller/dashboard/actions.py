"""Dashboard actions (scale, rollout undo, cordon, uncordon): off unless the controller runs with
``--ui-actions``, and then each one is confirmed in the page and carried out *as the person acting*.

The page sends the content of a client credentials file with the action; ``NatsActor`` connects to NATS
with exactly those credentials and makes the same API request the CLI would, so the NATS server's
permissions decide (read-only credentials are refused there) and the controller's own credentials are never
lent to a browser. The file is written to a private temporary file for the connection and removed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

from drover.shared.models import ApiReply

#: what the dashboard may ask for, and the body field every one of them needs
VERBS = {"scale": "name", "rollout_undo": "name", "cordon": "node", "uncordon": "node"}

#: ``act(credentials text, verb, body)`` → the controller's reply
Act = Callable[[str, str, dict[str, Any]], Awaitable[ApiReply]]


class ActionError(Exception):
    """An action that cannot be tried (bad request, no credentials): a 4xx for the page."""


def check(request: Any) -> tuple[str, str, dict[str, Any]]:
    """``(credentials, verb, body)`` of a well-formed action request, else ``ActionError``."""
    if not isinstance(request, dict):
        raise ActionError("the request must be a JSON object")
    verb, body, creds = request.get("verb"), request.get("body"), request.get("credentials")
    if verb not in VERBS:
        raise ActionError(f"unknown action {verb!r}: one of {', '.join(VERBS)}")
    if not isinstance(body, dict) or not isinstance(body.get(VERBS[verb]), str) or not body[VERBS[verb]]:
        raise ActionError(f"{verb} needs {VERBS[verb]}")
    if verb == "scale":
        replicas = body.get("replicas")
        if isinstance(replicas, bool) or not isinstance(replicas, int) or not 0 <= replicas <= 10_000:
            raise ActionError("replicas must be an integer 0-10000")
    if not isinstance(creds, str) or not creds.strip():
        raise ActionError("give a client credentials file: actions run with your own credentials")
    return creds, verb, body


class NatsActor:
    """Makes API requests on the cluster's NATS with credentials given per request."""

    def __init__(self, url: str, api_subject: Callable[[str], str], ca: str | None, timeout: float = 10.0):
        self.url = url
        self.api_subject = api_subject
        self.ca = ca
        self.timeout = timeout

    async def __call__(self, creds: str, verb: str, body: dict[str, Any]) -> ApiReply:
        from drover.shared import bus, idempotency, wire

        fd, path = tempfile.mkstemp(prefix="drover-ui-", suffix=".creds")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp: mode 0600, only this process reads it
                f.write(creds)
            try:
                nc = await bus.connect(self.url, name="drover-dashboard-action", creds=path, ca=self.ca,
                                       timeout=self.timeout)
            except Exception as exc:
                return ApiReply(ok=False, code="failed", error=f"cannot connect with these credentials: {exc}")
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
        try:
            # As the CLI does: one request id for every attempt (done once), sent again while it lands on a
            # paused controller or while the only one restarts.
            body = {**body, idempotency.KEY: idempotency.new_request_id()}
            msg = await bus.request_retrying(nc, self.api_subject(verb), wire.encode(body), timeout=self.timeout)
            return ApiReply.from_wire(msg.data)
        except Exception as exc:
            # A publish the server's permissions refuse gets no reply at all: say what that usually means.
            text = str(exc) or type(exc).__name__
            if "timeout" in type(exc).__name__.lower() or "permission" in text.lower():
                text = f"no reply: permission denied for these credentials, or no controller ({text})"
            return ApiReply(ok=False, code="failed", error=text)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 2.0)
