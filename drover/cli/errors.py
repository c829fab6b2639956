"""The CLI's error type and exit codes, in a module of their own so that the command group can catch
``CliError`` without importing the NATS client (``drover --help`` must start fast)."""

from __future__ import annotations

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
