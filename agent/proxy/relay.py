"""The per-connection TCP relay of the proxy, on ``asyncio.Protocol`` callbacks (no streams, no
reader/writer tasks, no task per connection): one ``ClientSide`` per accepted connection and one
``UpstreamSide`` per attempt to reach a backend, which drives ``loop.create_connection`` itself.

Rules
- Bytes are passed on as they arrive, with backpressure both ways: when one side's write buffer
  is over its high-water mark, the other side stops reading until it drains.
- Half-close: an EOF from one side is passed on as ``write_eof`` to the other; the connection is
  closed once both directions have ended (or either side is lost).
- Until the backend sends its first byte, the client's bytes are also kept (up to
  ``MAX_REPLAY`` bytes). A refused or timed-out connect, or a backend that resets or closes
  BEFORE its first response byte (docker-proxy accepts for a container that does not listen, then
  resets), is a failed attempt: the next backend (a fresh ``resolve()``, minus those that failed
  for this connection) is tried and the kept bytes (and the client's EOF) are sent again, up to
  ``max_attempts`` attempts; then the client is closed. Once the backend has answered, the relay
  is a plain pipe and a failure just closes both sides.
- Exception: after the client has half-closed, a clean EOF from the backend before any answer
  ends the conversation (the backend had nothing to say); only a reset is retried then.
- No (further) ready backend: the connection waits up to ``backend_wait`` seconds, asking ``resolve()``
  again every ``BACKEND_POLL`` s, before it is closed. The endpoint table is briefly empty while a node's
  replicas move (its agent was killed, or just restarted and has not heard the gossip yet); a client
  held for a moment is served, one closed at once sees a failure.
- A client that sent more than ``MAX_REPLAY`` bytes before any answer can no longer be replayed:
  a failure after that closes it rather than send part of a request twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, cast

import structlog

from drover.agent.proxy.balancer import Backend
from drover.agent.proxy.route import Route

log = structlog.get_logger("drover.agent.proxy")

MAX_REPLAY = 256 * 1024  # client bytes kept for a retry until the backend answers
BACKEND_POLL = 0.05  # seconds between looks at the endpoint table while a connection waits for a backend

_PAUSE_CONNECTING = 1  # the client's reading is paused: the kept bytes are at MAX_REPLAY while no backend is connected
_PAUSE_UPSTREAM = 2  # the client's reading is paused: the backend's write buffer is full


class UpstreamSide(asyncio.Protocol):
    """The proxy's connection to one backend, for one attempt of one client connection.

    It also steps the ``create_connection`` coroutine by hand (``step``), as a Task would, to
    spare a Task and a loop iteration per connection."""

    __slots__ = (
        "_client", "_client_transport", "_coro", "_released", "_timed_out", "_waiting", "backend", "dead", "transport",
    )

    def __init__(self, client: ClientSide, backend: Backend) -> None:
        self._client = client
        self._client_transport = client.transport
        self.backend = backend
        self.transport: asyncio.Transport | None = None
        self.dead = False  # this attempt was given up: a late connection_made must drop the transport
        self._released = False
        self._timed_out = False
        self._waiting: asyncio.Future[Any] | None = None
        self._coro: Coroutine[Any, Any, Any] | None = client.route.loop.create_connection(
            self.factory, backend.address, backend.port
        )

    def factory(self) -> UpstreamSide:
        return self

    # ------------------------------------------------------------------ driving create_connection
    def step(self, _done: object = None) -> None:
        coro = self._coro
        if coro is None:
            return
        self._waiting = None
        try:
            awaited = coro.send(None)
        except StopIteration:
            self._connect_done(None)
            return
        except BaseException as exc:  # refused, unreachable, cancelled on timeout or close: a failed attempt
            self._connect_done(exc)
            if not isinstance(exc, Exception | asyncio.CancelledError):
                raise
            return
        if awaited is None:  # a bare yield: run again on the next iteration, as a Task would
            self._client.route.loop.call_soon(self.step)
            return
        awaited._asyncio_future_blocking = False
        self._waiting = awaited
        awaited.add_done_callback(self.step)

    def _connect_done(self, exc: BaseException | None) -> None:
        self._coro = None
        route = self._client.route
        route.connecting.pop(self, None)
        if exc is not None and not self.dead:
            reason = f"connect timed out after {route.connect_timeout:g}s" if self._timed_out else f"connect: {exc!r}"
            self._client.attempt_failed(self, reason)

    def cancel_connect(self, *, timed_out: bool) -> None:
        self._timed_out = timed_out
        if self._waiting is not None:
            self._waiting.cancel()  # its done callback steps the coroutine, which raises CancelledError
        elif self._coro is not None:
            self._coro.close()
            self._connect_done(asyncio.CancelledError())

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._client.route.balancer.release(self.backend.key)

    # ------------------------------------------------------------------ protocol callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport instances
        if self.dead:
            t.abort()
            return
        self.transport = t
        self._client.upstream_made(self, t)

    def data_received(self, data: bytes) -> None:
        client = self._client
        client.busy = True
        if client.pipe is None:
            client.upstream_answered(self)
        self._client_transport.write(data)

    def eof_received(self) -> bool:
        if self.dead:
            return False
        return self._client.upstream_eof(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.release()
        if not self.dead:
            self._client.upstream_lost(self, exc)

    def pause_writing(self) -> None:
        self._client.pause(_PAUSE_UPSTREAM)

    def resume_writing(self) -> None:
        self._client.resume(_PAUSE_UPSTREAM)


class ClientSide(asyncio.Protocol):
    """One accepted client connection, relayed to one backend at a time."""

    __slots__ = (
        "_attempts",
        "_buffered",
        "_chunks",
        "_client_eof",
        "_closed",
        "_excluded",
        "_paused",
        "_up_eof",
        "_wait_handle",
        "_wait_until",
        "busy",
        "idle",
        "pipe",
        "route",
        "sink",
        "transport",
        "up",
    )

    def __init__(self, route: Route) -> None:
        self.route = route
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self.up: UpstreamSide | None = None  # the current attempt
        self.sink: asyncio.Transport | None = None  # the backend transport once connected (client bytes go there)
        self.pipe: asyncio.Transport | None = None  # the backend transport once it has answered (the fast path)
        self._chunks: list[bytes] | None = []  # client bytes kept for a replay; None once not replayable
        self._buffered = 0
        self._attempts = 0
        self._excluded: list[str] | None = None  # keys of the backends that failed for this connection
        self._client_eof = False
        self._up_eof = False
        self._closed = False
        self._paused = 0
        self._wait_until: float | None = None  # when waiting for a backend ends (None: not waited yet)
        self._wait_handle: asyncio.TimerHandle | None = None
        self.busy = True  # traffic since the last idle sweep
        self.idle = 0  # idle sweeps in a row without traffic

    # ------------------------------------------------------------------ client callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport
        route = self.route
        if not route.admit(self):
            self._closed = True  # never counted as open: connection_lost has nothing to undo
            self.transport.abort()
            return
        stats = route.stats
        stats.connections += 1
        stats.active += 1
        self._attempt()

    def data_received(self, data: bytes) -> None:
        self.busy = True
        pipe = self.pipe
        if pipe is not None:
            pipe.write(data)
            return
        sink = self.sink
        chunks = self._chunks
        if chunks is not None:
            chunks.append(data)
            self._buffered += len(data)
            if self._buffered > MAX_REPLAY:
                if sink is None:
                    self.pause(_PAUSE_CONNECTING)  # hold the client until a backend is connected
                else:
                    self._chunks = None  # too much to replay: this attempt is the last one
        if sink is not None:
            sink.write(data)

    def eof_received(self) -> bool:
        self._client_eof = True
        sink = self.sink
        if sink is not None:
            if self._up_eof:
                self._close_both()
                return False
            _write_eof(sink)
        return True  # keep our writing side open: the backend may still answer

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_waiting()
        route = self.route
        route.stats.active -= 1
        route.clients.discard(self)
        up = self.up
        if up is None:
            return
        if up.transport is not None:
            if exc is None:
                up.transport.close()  # after flushing what the client sent
            else:
                up.transport.abort()
        elif not up.dead:
            up.dead = True
            up.release()
            up.cancel_connect(timed_out=False)

    def pause_writing(self) -> None:
        sink = self.sink
        if sink is not None:
            sink.pause_reading()

    def resume_writing(self) -> None:
        sink = self.sink
        if sink is not None:
            sink.resume_reading()

    # ------------------------------------------------------------------ attempts
    def _attempt(self) -> None:
        route = self.route
        try:
            backends = route.resolve()
        except Exception:
            route.log.exception("proxy_resolve_failed")
            backends = ()
        excluded = self._excluded
        backend = route.balancer.pick(backends, excluded or ())
        if backend is None:
            if not self._wait_for_backend():
                self._give_up("no backend available" if not excluded else "no other backend available")
            return
        self._attempts += 1
        if self._attempts > 1:
            route.stats.retries += 1
        route.balancer.acquire(backend.key)
        up = UpstreamSide(self, backend)
        self.up = up
        route.start_connect(up)

    def _wait_for_backend(self) -> bool:
        """No (further) ready backend now: look again shortly, within ``backend_wait`` of the first look.
        True when a later look is scheduled."""
        route = self.route
        now = route.loop.time()
        if self._wait_until is None:
            self._wait_until = now + route.backend_wait
        if self._closed or now + BACKEND_POLL > self._wait_until:
            return False
        self._wait_handle = route.loop.call_later(BACKEND_POLL, self._look_again)
        return True

    def _look_again(self) -> None:
        self._wait_handle = None
        if not self._closed:
            self._attempt()

    def _stop_waiting(self) -> None:
        if self._wait_handle is not None:
            self._wait_handle.cancel()
            self._wait_handle = None

    def upstream_made(self, up: UpstreamSide, transport: asyncio.Transport) -> None:
        if self._closed or up is not self.up:
            up.dead = True
            up.release()
            transport.abort()
            return
        self.sink = transport
        chunks = self._chunks
        if chunks:
            if len(chunks) == 1:
                transport.write(chunks[0])
            else:
                transport.write(b"".join(chunks))
        if self._client_eof:
            _write_eof(transport)
        self.resume(_PAUSE_CONNECTING)

    def upstream_answered(self, up: UpstreamSide) -> None:
        self.pipe = up.transport
        self._chunks = None

    def upstream_eof(self, up: UpstreamSide) -> bool:
        if self.pipe is None:
            if self._client_eof or self._closed:
                self._close_both()  # the client is done and the backend had nothing to say
                return False
            self.attempt_failed(up, "closed before answering")
            return False
        self._up_eof = True
        if self._client_eof or self._closed:
            self._close_both()
            return False
        _write_eof(self.transport)
        return True

    def upstream_lost(self, up: UpstreamSide, exc: Exception | None) -> None:
        if up is not self.up or self._closed:
            return
        if self.pipe is None:
            self.attempt_failed(up, f"lost before answering: {exc!r}" if exc else "closed before answering")
        elif exc is None:
            self.transport.close()  # after flushing what the backend sent
        else:
            self.transport.abort()

    def attempt_failed(self, up: UpstreamSide, reason: str) -> None:
        if up.dead:
            return
        up.dead = True
        up.release()
        if up.transport is not None:
            up.transport.abort()
        if self._closed:
            return
        self.sink = None
        route = self.route
        route.stats.failed_attempts += 1
        if self._excluded is None:
            self._excluded = []
        self._excluded.append(up.backend.key)
        route.log.debug(
            "proxy_attempt_failed", backend=f"{up.backend.address}:{up.backend.port}", key=up.backend.key,
            attempt=self._attempts, reason=reason,
        )
        self.resume(_PAUSE_UPSTREAM)
        if self._chunks is None:
            self._give_up("failed after too much data to replay")
        elif self._attempts >= route.max_attempts:
            self._give_up(f"{self._attempts} attempts failed")
        else:
            self._attempt()

    def _give_up(self, reason: str) -> None:
        route = self.route
        route.stats.no_backend += 1
        route.log.debug("proxy_client_closed", reason=reason, attempts=self._attempts)
        self.transport.close()

    # ------------------------------------------------------------------ flow control and closing
    def pause(self, why: int) -> None:
        if not self._paused and not self._closed:
            self.transport.pause_reading()
        self._paused |= why

    def resume(self, why: int) -> None:
        if self._paused & why:
            self._paused &= ~why
            if not self._paused and not self._closed:
                self.transport.resume_reading()

    def _close_both(self) -> None:
        self.transport.close()
        sink = self.sink
        if sink is not None:
            sink.close()

    def abort(self) -> None:
        """Drop this connection and its backend connection at once."""
        self._stop_waiting()
        up = self.up
        if up is not None and not up.dead:
            up.dead = True
            up.release()
            if up.transport is not None:
                up.transport.abort()
            else:
                up.cancel_connect(timed_out=False)
        self.transport.abort()


def _write_eof(transport: asyncio.Transport) -> None:
    """Half-close ``transport``; a peer already gone is dropped at once (its ``connection_lost``
    follows)."""
    try:
        if transport.can_write_eof():
            transport.write_eof()
    except OSError:
        transport.abort()
