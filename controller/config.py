"""Controller settings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class ControllerConfig:
    nats_url: str
    cluster: str = "default"
    creds: str | None = None  # NATS credentials (or nkey seed) file; None: anonymous
    ca: str | None = None  # the cluster CA (PEM): TLS to NATS; None: plain
    id: str | None = None
    node_grace: float = 3.0  # seconds without a heartbeat before a node is lost
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    ui_port: int | None = None  # the web dashboard's port (0: a free one); None: no dashboard
    ui_address: str = "127.0.0.1"
    ui_actions: bool = False  # scale/undo/cordon from the dashboard, each with the user's own credentials
    resync_interval: float = 1.0  # how often services that wait on time alone (rollouts, jobs) are planned again
    full_resync_interval: float = 30.0  # a pass over everything, not only what was marked dirty (a safety net)
    # A file: every scoped pass is compared with a full pass of the same snapshot, differences appended there
    # (a development aid: it doubles the planning work).
    verify_scope: str | None = field(default_factory=lambda: os.environ.get("DROVER_VERIFY_SCOPE") or None)
    lease_ttl: int = 2  # seconds; a new leader takes over about this long after the old one stops renewing
    secret_key_file: str | None = None  # None: $DROVER_SECRET_KEY, else $DROVER_HOME/<cluster>.secret.key
    # Host mounts of / or the Docker socket hand a container the host: refused unless the cluster allows them.
    allow_privileged_mounts: bool = field(
        default_factory=lambda: os.environ.get("DROVER_ALLOW_PRIVILEGED_MOUNTS", "").lower() in ("1", "true", "yes")
    )
