"""The CLI's error type and exit codes, in a module of their own so that the command group can catch
``CliError`` without importing the NATS client (``drover --help`` must start fast)."""

from __future__ import annotations

from typing import Any

EXIT_FAILED = 1
EXIT_INVALID = 2


class CliError(Exception):
    """A failure to report as ``error: <line>`` lines on stderr, then exit with ``code``."""

    def __init__(self, *lines: str, code: int = EXIT_FAILED):
        self.lines = [line for line in lines if line]
        self.code = code
        super().__init__("; ".join(self.lines))


class Unsupported(CliError):
    """The controller does not know the verb."""


class PermissionDenied(CliError):
    """The server refused the request for these credentials (exit 1, never mistaken for an unknown verb)."""


def reply_error(verb: str, reply: Any) -> CliError:
    """The CliError for a failed controller reply (``client.Reply``): its problems one a line, exit 2 for
    ``invalid``."""
    lines: list[str] = []
    for p in reply.problems:
        where = str(p.get("where") or "")
        message = str(p.get("message") or "")
        lines.append(f"{where}: {message}" if where else message)
    if not lines:
        lines = [line for line in (reply.error or f"{verb} failed ({reply.code or 'no reason given'})").split("; ")]
    code = EXIT_INVALID if reply.code == "invalid" else EXIT_FAILED
    if reply.code == "unsupported":
        return Unsupported(*lines, code=EXIT_FAILED)
    return CliError(*lines, code=code)
