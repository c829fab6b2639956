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
    resync_interval: float = 1.0  # level-triggered re-evaluation even without changes
    lease_ttl: int = 2  # seconds; a new leader takes over about this long after the old one stops renewing
    secret_key_file: str | None = None  # None: $DROVER_SECRET_KEY, else $DROVER_HOME/<cluster>.secret.key
    # Host mounts of / or the Docker socket hand a container the host: refused unless the cluster allows them.
    allow_privileged_mounts: bool = field(
        default_factory=lambda: os.environ.get("DROVER_ALLOW_PRIVILEGED_MOUNTS", "").lower() in ("1", "true", "yes")
    )
