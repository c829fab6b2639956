"""Request ids of API writes: the CLI gives every write request one id, the same on each retry, and the
controllers answer a retried id with the reply they gave the first time instead of doing the write again
(see ``controller/requestlog.py``). Reads carry no id: doing them twice is harmless.

Imported by the CLI on every command: keep it free of heavy imports.
"""

from __future__ import annotations

import os
import re

KEY = "request_id"

# Every verb of controller/api.py that changes the cluster. A verb missing here is still answered, only
# not deduplicated; a read listed here would only be cached for a few minutes per request id.
WRITE_VERBS = frozenset({
    "apply", "delete", "scale",
    "rollout_undo", "rollout_pause", "rollout_resume",
    "cordon", "uncordon", "drain",
    "secret_create", "secret_delete",
    "snapshot_restore",
})

# Also a valid NATS KV key (the controllers store replies under it).
_VALID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def new_request_id() -> str:
    return os.urandom(16).hex()


def request_id_of(verb: str, body: dict[str, object]) -> str | None:
    """The request id a write request carries (None: a read, or a client that sends none).
    Raises ``ValueError`` for an id that is not 1-64 letters, digits, '-' or '_'."""
    if verb not in WRITE_VERBS:
        return None
    rid = body.get(KEY)
    if rid is None or rid == "":
        return None
    if not isinstance(rid, str) or not _VALID.fullmatch(rid):
        raise ValueError("must be 1-64 letters, digits, '-' or '_'")
    return rid
