"""One bounded pass of nats-py's first connect, for short-lived clients (the CLI, ``credentials revoke``).

nats-py's ``connect`` with ``max_reconnect_attempts=1`` is meant to try each server twice and give up, but a
server that answers (its INFO names the cluster's other servers) and then refuses the connection never lets
it stop: a server dropped from the pool after its attempts comes back, as new, with the next INFO from
another member. A revoked or wrong credential against a 3-server cluster so loops for ever (thousands of
attempts a minute), and the caller's ``asyncio.wait_for`` around it is the only bound — one Python 3.11 can
lose when a cancellation meets a finishing inner wait (it hung a CLI for 120 s in CI).

``FirstConnect.on_error`` is the connection's ``error_cb``: while connecting, it ends the attempt at once on
an authorization violation (every server of a cluster shares the same accounts: asking the next one gives
the same answer) and after a fixed number of errors otherwise, by raising ``ConnectAborted`` — nats-py calls
the error callback from inside its retry loop and lets what it raises end ``connect``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable


class ConnectAborted(Exception):
    """Raised from the error callback to end nats-py's first connect (not an ``OSError`` or a NATS error,
    which nats-py would catch and retry)."""


def is_authorization_violation(exc: BaseException) -> bool:
    from nats.errors import AuthorizationError

    return isinstance(exc, AuthorizationError) or "authorization violation" in str(exc).lower()


class FirstConnect:
    """Collects the errors of a first connect and bounds it: ``attempts_per_server`` errors per listed server,
    plus room for the servers a cluster advertises (``discovered``). After ``connected()``, errors go to
    ``after`` (or are only collected)."""

    def __init__(
        self,
        servers: int,
        *,
        attempts_per_server: int = 2,
        discovered: int = 2,
        after: Callable[[Exception], Awaitable[None]] | None = None,
    ) -> None:
        self.errors: list[Exception] = []
        self.budget = attempts_per_server * (max(1, servers) + discovered)
        self._connecting = True
        self._after = after

    def connected(self) -> None:
        self._connecting = False

    @property
    def refused(self) -> bool:
        """The cluster refused these credentials (as opposed to being unreachable)."""
        return any(is_authorization_violation(e) for e in self.errors)

    async def on_error(self, exc: Exception) -> None:
        if not self._connecting:
            if self._after is not None:
                await self._after(exc)
            else:
                self.errors.append(exc)
            return
        self.errors.append(exc)
        if is_authorization_violation(exc):
            raise ConnectAborted("authorization violation") from exc
        if len(self.errors) >= self.budget:
            raise ConnectAborted(f"gave up after {len(self.errors)} failed attempts") from exc
