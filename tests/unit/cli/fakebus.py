"""The inbox side of a fake NATS connection for CLI tests whose fake answers ``request(subject, data)``:
the CLI's request loop subscribes to an inbox and publishes (again, while unanswered) with it as the reply
subject, so ``publish`` here puts the fake's answer (or a 503 "no responders" status) into that inbox."""

from __future__ import annotations

import asyncio
from typing import Any

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError


class _Status:
    data = b""
    headers = {"Status": "503"}


class Inbox:
    """A subscription to the request loop's inbox: what is put into ``queue`` is its next message."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.unsubscribed = False

    async def next_msg(self, timeout: float) -> Any:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            raise NatsTimeoutError from None

    async def unsubscribe(self) -> None:
        self.unsubscribed = True


class InboxFromRequest:
    """Mix into a fake connection that has ``async request(subject, data)``."""

    _inbox: Inbox

    def new_inbox(self) -> str:
        return "_INBOX.fake"

    async def subscribe(self, subject: str) -> Inbox:
        self._inbox = Inbox()
        return self._inbox

    async def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        try:
            msg = await self.request(subject, payload)  # type: ignore[attr-defined]
        except NoRespondersError:
            msg = _Status()
        if not hasattr(msg, "headers"):  # the fakes' replies carry data only; a real Msg has headers
            msg.headers = None
        self._inbox.queue.put_nowait(msg)
