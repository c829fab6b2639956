"""The leader lease, kept on a thread of its own: a busy controller never loses it.

The ``Elector`` (``leader.py``) runs on its own thread, with its own event loop and its own NATS connection,
so that its renewal (every TTL/4) never waits behind the controller's own work: thousands of heartbeats, a
big apply being validated, a long plan. Python's GIL is handed over every few milliseconds, so the renewal
runs while the main thread computes; a SIGSTOPped process renews nothing and loses the lease as before.

The rules of ``leader.py`` still hold:
- a leader acts only while it can prove its lease (``holds``: renewed within 3/4 of the TTL, by the thread);
- the controller learns of a change on its own loop (``on_change``) before it acts on it, so it never
  writes with a term it has not taken in;
- a controller whose loop shows no life for ``busy_limit`` seconds (stuck, not just busy) stops renewing,
  so the lease lapses and a standby takes over; one whose main NATS connection is down stops renewing too
  (it could not act anyway);
- acquiring asks the controller's loop for the term floor: a controller whose loop is stalled does not
  take the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog

from drover.controller.leader import Elector, LeaderState, open_leader_bucket
from drover.shared.bus import on_context

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

log = structlog.get_logger("drover.leader")

BUSY_LIMIT = 15.0  # seconds without a sign of life from the controller's loop before the lease is let go
LIVENESS_TICK = 0.1  # how often the controller's loop says it is alive


class LeaseKeeper:
    """An ``Elector`` on its own thread; ``run`` (a supervised task of the controller) starts and watches it.

    ``connect`` opens the thread's own NATS connection (called on the thread's loop); ``connected`` says
    whether the controller's main connection is up; the callbacks run on the controller's loop."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[NATS]],
        bucket: str,
        my_id: str,
        *,
        ttl: int = 2,
        replicas: int = 1,
        on_change: Callable[[LeaderState], None] = lambda st: None,
        term_floor: Callable[[], int] = lambda: 0,
        on_damaged: Callable[[str, str], None] = lambda key, error: None,
        connected: Callable[[], bool] = lambda: True,
        busy_limit: float = BUSY_LIMIT,
    ) -> None:
        self._connect = connect
        self.bucket, self.id, self.ttl, self.replicas = bucket, my_id, ttl, replicas
        self._on_change, self._term_floor, self._on_damaged = on_change, term_floor, on_damaged
        self._connected = connected
        self.busy_limit = busy_limit
        self.state = LeaderState()  # as the controller's loop knows it (changed only there)
        self.elector: Elector | None = None  # lives on the thread
        self._main: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the thread's loop
        self._task: asyncio.Task[None] | None = None  # the thread's main task
        self._alive = time.monotonic()  # the controller's loop was last seen running then
        self._held_down = False  # a step-down was asked for and has not reached the thread yet
        self._not_renewing_logged = False

    # --- read and called on the controller's loop --------------------------------------------------------

    def holds(self) -> bool:
        """Leading, the change taken in by the controller, and the lease proven held by a recent renewal."""
        e = self.elector
        return (
            self.state.is_leader
            and not self._held_down
            and e is not None
            and e.holds()
            and e.state.term == self.state.term
        )

    def step_down(self, why: str) -> None:
        """Stop acting at once; the thread stops renewing (another leader exists)."""
        loop, e = self._loop, self.elector
        if not self.state.is_leader or loop is None or e is None:
            return
        self._held_down = True

        def down() -> None:
            e.step_down(why)
            self._hop(self._stepped_down)  # after the change that step_down itself passed on

        with contextlib.suppress(RuntimeError):  # the thread's loop already closed
            loop.call_soon_threadsafe(down)

    async def resign(self) -> None:
        """Give the lease up now (a clean shutdown): another controller need not wait for it to expire."""
        loop, e = self._loop, self.elector
        if loop is None or e is None or loop.is_closed():
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.wrap_future(asyncio.run_coroutine_threadsafe(e.resign(), loop)), 5)
        self._apply(LeaderState())

    async def run(self) -> None:
        """Start the thread and tick the liveness clock until cancelled (then the thread stops, without
        resigning: a controller that dies lets its lease expire). A thread that fails ends this task with
        its error, and the supervisor starts both again."""
        self._main = asyncio.get_running_loop()
        done: asyncio.Future[None] = self._main.create_future()
        thread = threading.Thread(target=self._thread, args=(done,), name=f"lease-{self.id}", daemon=True)
        thread.start()
        try:
            while not done.done():
                self._alive = time.monotonic()
                await asyncio.wait({done}, timeout=LIVENESS_TICK)
            done.result()
        finally:
            self._stop_thread()
            await asyncio.to_thread(thread.join, 10)
            self._held_down = False
            self._apply(LeaderState())

    def _apply(self, st: LeaderState) -> None:
        was = self.state
        self.state = st
        if (was.is_leader, was.term) != (st.is_leader, st.term):
            self._on_change(st)

    def _stepped_down(self) -> None:
        self._held_down = False

    async def _floor(self) -> int:
        return self._term_floor()

    # --- the thread ------------------------------------------------------------------------------------

    def _hop(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the controller's loop."""
        if self._main is not None:
            with contextlib.suppress(RuntimeError):  # the controller's loop closed: nothing left to tell
                self._main.call_soon_threadsafe(fn, *args)

    def _may_renew(self) -> bool:
        quiet = time.monotonic() - self._alive
        ok = quiet < self.busy_limit and self._connected()
        if not ok and not self._not_renewing_logged:
            log.warning("not renewing the lease", controller=self.id, loop_silent_s=round(quiet, 1),
                        connected=self._connected())
        self._not_renewing_logged = not ok
        return ok

    async def _term_floor_from_main(self) -> int:
        """The term floor, computed on the controller's loop (it reads the controller's state); a stalled
        loop does not answer within the TTL, and then this acquisition attempt fails."""
        if self._main is None:
            raise RuntimeError("the controller's loop is unknown")
        future = asyncio.run_coroutine_threadsafe(self._floor(), self._main)
        return await asyncio.wait_for(asyncio.wrap_future(future), self.ttl)

    def _thread(self, done: asyncio.Future[None]) -> None:
        error: BaseException | None = None
        try:
            asyncio.run(self._thread_main())
        except BaseException as exc:  # reported to run() on the controller's loop
            error = exc

        def finish() -> None:
            if done.done():
                return
            if error is None or isinstance(error, asyncio.CancelledError):
                done.set_result(None)
            else:
                done.set_exception(error)

        self._hop(finish)

    async def _thread_main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        nc = await self._connect()
        try:
            opened = await open_leader_bucket(nc.jetstream(), self.bucket, self.replicas)
            # A lease step is worth nothing after one TTL: a request lost in a socket to a nats-server that died
            # meanwhile (the first write after a pause, before the client saw the socket close) is given up then,
            # not after nats-py's default 5 s, and the next step (TTL/4 later) asks again on the new connection.
            js = nc.jetstream(timeout=float(self.ttl))
            kv = on_context(opened, js)
            self.elector = Elector(
                js, kv, self.bucket, self.id, ttl=self.ttl,
                on_change=lambda st: self._hop(self._apply, st),
                term_floor=self._term_floor_from_main,
                on_damaged=lambda key, error: self._hop(self._on_damaged, key, error),
                may_renew=self._may_renew,
            )
            await self.elector.run()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 2)

    def _stop_thread(self) -> None:
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
