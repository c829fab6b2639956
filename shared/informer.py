"""One informer per KV bucket: list + watch into typed records, the only way drover daemons read a bucket.

Like a Kubernetes informer: it lists the bucket (the watch's initial snapshot), then follows updates; it
relists when the client reconnected to NATS (an ordered consumer can silently stall across a server restart)
and every ``resync`` seconds as a safety net. Keys present before a relist and absent after it count as
deleted, so a delete missed while disconnected is not kept forever. Every value goes through one decode
path; a DEL, a PURGE, a TTL expiry marker and an empty value are all "deleted".

The listing ends with the entry that says nothing more is pending (its ``delta`` is 0). nats-py's own
end-of-listing marker is not trusted when it comes before any entry: nats-py sends it when the consumer's
info shows nothing pending and nothing received, which also holds while the first entries are on their way
(so a loaded process listed a full bucket as empty, and a relist reported every key deleted). Such a marker
ends the listing only if the bucket's stream really holds no message.

An entry that does not decode is *damaged*: it is handed to ``on_damaged`` once per (key, revision) — never
retried in a loop — and the cache keeps the key's last good value (the owner decides to repair it or to
ignore it). A later good value or a delete clears the damage.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog
from nats.js.kv import KeyValue

from drover.shared.bus import bucket_is_empty
from drover.shared.errors import WireError
from drover.shared.retry import Backoff, Patience

T = TypeVar("T")

log = structlog.get_logger("drover.informer")

DELETE_OPS = ("DEL", "PURGE")
# Seconds a watch's set-up (its consumer's creation) may take (``Patience``): only JetStream's meta leader
# creates consumers, and a request that met its election (a nats-server died) is never answered.
WATCH_SETUP_FIRST = 1.0
WATCH_SETUP_MAX = 5.0


@dataclass(frozen=True)
class Damage:
    key: str
    revision: int
    error: str


class Informer(Generic[T]):
    """Keeps ``items`` (key -> (record, revision)) equal to the bucket; calls ``on_change(key, record|None,
    revision)`` on every change and ``on_damaged(Damage)`` once per undecodable (key, revision).

    Narrow dependencies: the bucket, a decoder, and ``reconnects()`` (a counter that grows when the NATS client
    reconnected, e.g. ``lambda: nc.stats["reconnects"]``); ``is_empty()`` (default: the bucket's stream info)
    confirms an empty listing."""

    def __init__(
        self,
        name: str,
        kv: KeyValue,
        decode: Callable[[bytes], T],
        *,
        on_change: Callable[[str, T | None, int], None],
        on_damaged: Callable[[Damage], None] | None = None,
        reconnects: Callable[[], int] = lambda: 0,
        resync: float = 30.0,
        poll: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        is_empty: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.name = name
        self.kv = kv
        self.is_empty = is_empty or (lambda: bucket_is_empty(kv))
        self.decode = decode
        self.on_change = on_change
        self.on_damaged = on_damaged
        self.reconnects = reconnects
        self.resync = resync
        self.poll = poll
        self.clock = clock
        self.items: dict[str, tuple[T, int]] = {}
        self.damaged: dict[str, Damage] = {}
        # key -> hash of the value ``items`` holds: a relisted entry with the same revision and bytes is not
        # decoded again (at 1,000 nodes a relist every ``resync`` was 1,000 assignment decodes on the loop);
        # the bytes are compared too because revisions start again if the bucket is ever recreated.
        self._held: dict[str, int] = {}
        self.ready = asyncio.Event()  # set once the first listing has been applied
        # The highest revision (= the bucket stream's sequence) applied from the bucket, listing or watch: once
        # it reaches the stream's last sequence, ``items`` holds everything written up to then (the read
        # barrier, controller/readbarrier.py). What this process wrote itself (``hold``) does not count: an
        # earlier write by another may still be on its way.
        self.seen = 0
        self.relists = 0
        self._relist_asked = False  # ``relist``: the watch is ended and the bucket listed again at its next poll
        self.setup = Patience(WATCH_SETUP_FIRST, WATCH_SETUP_MAX)
        self.early_markers = 0  # nats-py end-of-listing markers that came before the entries (not trusted)

    # --- the one decode path ------------------------------------------------------------------------------
    def apply(self, key: str, value: bytes | None, revision: int, op: str | None) -> None:
        """Apply one entry of the bucket (from the listing or the watch)."""
        self.seen = max(self.seen, revision)
        cur = self.items.get(key)
        if cur is not None and cur[1] > revision:
            return  # older than what we hold (a relist racing an update)
        if cur is not None and cur[1] == revision and value and self._held.get(key) == hash(value):
            return  # what we hold (a relist: the whole bucket again, most of it unchanged): nothing to decode
        if op in DELETE_OPS or not value:
            self._held.pop(key, None)
            self.damaged.pop(key, None)
            if self.items.pop(key, None) is not None or cur is None:
                self.on_change(key, None, revision)
            return
        try:
            record = self.decode(value)
        except (WireError, ValueError, TypeError) as exc:
            known = self.damaged.get(key)
            if known is not None and known.revision == revision:
                return  # already told
            damage = Damage(key, revision, str(exc) or type(exc).__name__)
            self.damaged[key] = damage
            log.warning("damaged record", bucket=self.name, key=key, revision=revision, error=damage.error)
            if self.on_damaged is not None:
                self.on_damaged(damage)
            return
        self.damaged.pop(key, None)
        self.items[key] = (record, revision)
        self._held[key] = hash(value)
        self.on_change(key, record, revision)

    def hold(self, key: str, record: T, revision: int, value: bytes) -> None:
        """What this process just wrote itself (``value`` at ``revision``, already applied by the writer): its
        echo from the watch, and a relist that finds it unchanged, are not decoded again nor reported."""
        cur = self.items.get(key)
        if cur is None or cur[1] < revision:
            self.items[key] = (record, revision)
            self._held[key] = hash(value)
            self.damaged.pop(key, None)

    def _relisted(self, listing: dict[str, tuple[bytes | None, int, str | None]]) -> None:
        for key, (value, revision, op) in listing.items():
            self.apply(key, value, revision, op)
        for key in set(self.items) - set(listing):
            rev = self.items[key][1]
            del self.items[key]
            self._held.pop(key, None)
            self.on_change(key, None, rev)
        for key in set(self.damaged) - set(listing):
            del self.damaged[key]

    def _listed(self, listing: dict[str, tuple[bytes | None, int, str | None]]) -> None:
        self.relists += 1
        self._relisted(listing)
        listing.clear()
        self.ready.set()

    def relist(self) -> None:
        """List the bucket again (within one ``poll``): a reader found this informer behind its stream (a watch
        that fell behind after its stream's leader moved; otherwise only the ``resync`` would mend it)."""
        self._relist_asked = True

    # --- list + watch ---------------------------------------------------------------------------------------
    async def run(self) -> None:
        backoff = Backoff(initial=0.1, cap=2.0)
        while True:
            try:
                await self._list_and_watch()
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away, JetStream not ready: relist after a pause
                log.info("watch interrupted, relisting", bucket=self.name, error=repr(exc))
                await backoff.wait()

    async def _list_and_watch(self) -> None:
        seen_reconnects = self.reconnects()
        # Given up by cancelling: before the consumer exists nothing is left behind here; a consumer the server
        # makes after all has no subscriber and is removed by its inactivity threshold.
        watcher = await self.setup.run(self.kv.watchall())
        try:
            listing: dict[str, tuple[bytes | None, int, str | None]] = {}
            listed = False
            started = self.clock()
            while True:
                try:
                    entry: Any = await watcher.updates(timeout=self.poll)  # type: ignore[no-untyped-call]
                except Exception as exc:
                    if "timeout" not in type(exc).__name__.lower():
                        raise
                    entry = _NOTHING
                if self.reconnects() != seen_reconnects or self.clock() - started > self.resync or self._relist_asked:
                    self._relist_asked = False
                    return  # relist: a new watch delivers the whole bucket again
                if entry is _NOTHING:
                    continue
                if entry is None:
                    if not listed and (listing or await self.is_empty()):
                        listed = True
                        self._listed(listing)
                    elif not listed:
                        self.early_markers += 1  # the entries are on their way: the last of them ends the listing
                    continue
                if not listed:
                    listing[entry.key] = (entry.value, entry.revision or 0, entry.operation)
                    if entry.delta == 0:  # nothing more pending: the listing is complete
                        listed = True
                        self._listed(listing)
                else:
                    self.apply(entry.key, entry.value, entry.revision or 0, entry.operation)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]


_NOTHING = object()
