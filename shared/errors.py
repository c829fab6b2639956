"""Typed errors shared by every drover component."""

from __future__ import annotations


class DroverError(Exception):
    """Base of all drover errors."""


class TemporaryError(DroverError):
    """Worth retrying with backoff (a CAS conflict, NATS briefly away, Docker busy)."""


class PermanentError(DroverError):
    """Retrying will not help: report it and stop."""


class ValidationError(PermanentError):
    """Bad input; ``problems`` are (path, message) pairs naming where it is wrong."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in problems))


class NotFoundError(PermanentError):
    """The named object does not exist."""


class WireError(PermanentError):
    """A bus message could not be decoded into its record."""


class ConflictError(TemporaryError):
    """A compare-and-set write lost the race: re-read and retry."""
