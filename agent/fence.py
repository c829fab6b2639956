"""The highest controller term a node has accepted, kept beside its data across agent restarts.

Without it a restarted agent would take an assignment from a deposed controller (a lower term) that a
stale leader wrote while the agent was away. The file is written atomically (temporary file, fsync,
rename, fsync of the directory) before an assignment of a higher term is acted on. A missing file means
"no term yet"; an unreadable one, or a term out of range, is reported and read as 0 rather than wedging
the node on a value no controller can reach.

Terms count within one incarnation of the cluster's store: the file also names the incarnation (a digest
of the cluster key, created at random with the store), and a term kept for another incarnation (NATS data
wiped, a new cluster of the same name) does not apply — else every new cluster would be refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import structlog

from drover.shared.models import MAX_COUNTER

log = structlog.get_logger("drover.agent.fence")

STATE_FILE = "term.json"


def default_data_dir(cluster: str, node: str) -> Path:
    """``$DROVER_HOME/agents/<cluster>/<node>`` (``DROVER_HOME`` defaults to ``~/.drover``)."""
    home = Path(os.environ.get("DROVER_HOME") or "~/.drover").expanduser()
    return home / "agents" / cluster / node


def incarnation(cluster_key: bytes) -> str:
    """A name for one incarnation of the cluster's store (the cluster key is created with it)."""
    return hashlib.sha256(b"drover-incarnation:" + cluster_key).hexdigest()[:16]


class TermFile:
    """``path`` None: nothing is kept (an agent embedded in a test or a tool)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.incarnation: str | None = None

    def load(self, incarnation: str | None = None) -> int:
        """The term kept for ``incarnation`` (None: unknown, whatever is kept applies); later saves name it."""
        self.incarnation = incarnation
        if self.path is None:
            return 0
        try:
            body = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            log.warning("term file unreadable; starting from term 0", path=str(self.path), error=str(exc))
            return 0
        term = body.get("term") if isinstance(body, dict) else None
        if isinstance(term, bool) or not isinstance(term, int) or not 0 <= term <= MAX_COUNTER:
            log.warning("term file holds no valid term; starting from term 0", path=str(self.path))
            return 0
        kept_for = body.get("cluster")
        if incarnation is not None and kept_for != incarnation:
            log.info("term kept for another incarnation of the cluster; starting from term 0", path=str(self.path))
            return 0
        return term

    def save(self, term: int) -> None:
        """Persist ``term``; a failure is logged (refusing every assignment would stop the node instead)."""
        if self.path is None:
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"v": 1, "term": term, "cluster": self.incarnation}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("cannot persist the accepted term", path=str(self.path), term=term, error=str(exc))
            with contextlib.suppress(OSError):
                tmp.unlink()
