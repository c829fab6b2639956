"""The informer's one decode path: changes, deletions of every kind, damage told once per revision."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from drover.shared.informer import Damage, Informer
from drover.shared.models import NodeControl
from tests.fixtures.wait import wait_for


def make() -> tuple[Informer[NodeControl], list[tuple[str, Any, int]], list[Damage]]:
    changes: list[tuple[str, Any, int]] = []
    damages: list[Damage] = []
    inf: Informer[NodeControl] = Informer(
        "nodectl", None, NodeControl.from_wire,  # type: ignore[arg-type]
        on_change=lambda k, v, r: changes.append((k, v, r)), on_damaged=damages.append,
    )
    return inf, changes, damages


def test_changes_deletes_and_damage() -> None:
    inf, changes, damages = make()
    inf.apply("n1", NodeControl(cordoned=True).to_wire(), 1, None)
    assert inf.items["n1"][0].cordoned and changes[-1][0] == "n1"
    inf.apply("n1", b"\xc1garbage", 2, None)
    inf.apply("n1", b"\xc1garbage", 2, None)  # the same revision again (a relist): not told twice
    assert [d.revision for d in damages] == [2]
    assert inf.items["n1"][0].cordoned  # the last good value is kept
    inf.apply("n1", b"\xc1garbage", 3, None)
    assert [d.revision for d in damages] == [2, 3]
    for op in ("DEL", "PURGE"):
        inf.apply("n2", NodeControl().to_wire(), 5, None)
        inf.apply("n2", None, 6, op)
        assert "n2" not in inf.items and changes[-1] == ("n2", None, 6)
    inf.apply("n1", b"", 7, None)  # an empty value (a TTL marker) is a deletion too
    assert "n1" not in inf.items and "n1" not in inf.damaged
    inf.apply("n3", NodeControl().to_wire(), 9, None)
    inf.apply("n3", NodeControl(cordoned=True).to_wire(), 8, None)  # older than held: ignored
    assert not inf.items["n3"][0].cordoned


def test_relist_drops_keys_that_vanished() -> None:
    inf, changes, _ = make()
    inf.apply("a", NodeControl().to_wire(), 1, None)
    inf.apply("b", NodeControl().to_wire(), 2, None)
    inf._relisted({"a": (NodeControl().to_wire(), 1, None)})
    assert set(inf.items) == {"a"} and changes[-1] == ("b", None, 2)


@given(st.binary(max_size=200))
@settings(max_examples=200)
def test_random_bytes_never_raise(data: bytes) -> None:
    inf, _, damages = make()
    inf.apply("k", data, 1, None)
    assert ("k" in inf.items) != bool(damages) or not data


def counting_informer() -> tuple[Informer[NodeControl], list[bytes], list[tuple[str, Any, int]]]:
    """A node-control informer that records what it decodes and the changes it reports."""
    decoded: list[bytes] = []
    changes: list[tuple[str, Any, int]] = []

    def decode(data: bytes) -> NodeControl:
        decoded.append(data)
        return NodeControl.from_wire(data)

    inf: Informer[NodeControl] = Informer("nodectl", None, decode,  # type: ignore[arg-type]
                                          on_change=lambda k, v, r: changes.append((k, v, r)))
    return inf, decoded, changes


def test_relisted_unchanged_entry_is_not_decoded_again() -> None:
    inf, decoded, changes = counting_informer()
    a, b = NodeControl().to_wire(), NodeControl(cordoned=True).to_wire()
    inf._relisted({"a": (a, 1, None), "b": (b, 2, None)})
    assert len(decoded) == 2 and len(changes) == 2
    inf._relisted({"a": (a, 1, None), "b": (b, 2, None)})  # the periodic relist: nothing new
    assert len(decoded) == 2 and len(changes) == 2
    inf._relisted({"a": (b, 1, None), "b": (b, 2, None)})  # same revision, other bytes (a recreated bucket)
    assert len(decoded) == 3 and changes[-1][0] == "a" and changes[-1][1].cordoned
    inf.apply("b", None, 3, "DEL")
    inf._relisted({"a": (b, 1, None), "b": (b, 4, None)})  # back with a new revision: decoded
    assert len(decoded) == 4 and inf.items["b"][1] == 4


def test_a_value_this_process_wrote_is_held_not_decoded_again() -> None:
    inf, decoded, changes = counting_informer()
    mine = NodeControl(cordoned=True)
    inf.hold("a", mine, 5, mine.to_wire())
    inf.apply("a", mine.to_wire(), 5, None)  # its echo from the watch
    inf._relisted({"a": (mine.to_wire(), 5, None)})  # and a relist
    assert decoded == [] and changes == [] and inf.items["a"] == (mine, 5)
    inf.hold("a", NodeControl(), 4, NodeControl().to_wire())  # older than held: ignored
    assert inf.items["a"] == (mine, 5)
    inf.apply("a", NodeControl().to_wire(), 6, None)  # someone else's later write: decoded and told
    assert len(decoded) == 1 and changes[-1][2] == 6


async def _yes() -> bool:
    return True


class _QuietWatch:
    """A watch that lists an empty bucket and then hears nothing (a watch fallen behind its stream)."""

    def __init__(self) -> None:
        self.listed = False

    async def updates(self, timeout: float) -> Any:
        if not self.listed:
            self.listed = True
            return None  # end of the (empty) listing
        await asyncio.wait_for(asyncio.Event().wait(), timeout)  # nothing comes: nats-py's timeout

    async def stop(self) -> None:
        return None


class _Bucket:
    def __init__(self) -> None:
        self.watches = 0

    async def watchall(self) -> _QuietWatch:
        self.watches += 1
        return _QuietWatch()


async def test_relist_asked_lists_the_bucket_again_within_a_poll() -> None:
    kv = _Bucket()
    inf: Informer[NodeControl] = Informer(
        "nodectl", kv, NodeControl.from_wire, on_change=lambda k, v, r: None, poll=0.01,  # type: ignore[arg-type]
        is_empty=_yes,
    )
    task = asyncio.ensure_future(inf.run())
    try:
        await wait_for(lambda: inf.relists == 1, timeout=5)
        assert inf.ready.is_set() and inf.items == {} and inf.early_markers == 0  # an empty bucket's marker ends it
        await wait_for(lambda: kv.watches == 1 and inf.relists == 1, timeout=5)  # no relist unasked
        inf.relist()
        await wait_for(lambda: kv.watches == 2 and inf.relists == 2, timeout=5, message="relist not done")
    finally:
        task.cancel()


class _ElectingBucket(_Bucket):
    """JetStream's meta leader being elected: a watch's consumer request is never answered (nats-py would
    wait 5 s) until ``elected`` is set; after that a watch is set up at once."""

    def __init__(self) -> None:
        super().__init__()
        self.elected = asyncio.Event()
        self.given_up = 0

    async def watchall(self) -> _QuietWatch:
        if not self.elected.is_set():
            try:
                await asyncio.Event().wait()  # the request is lost: only the informer's own deadline ends it
            except asyncio.CancelledError:
                self.given_up += 1
                raise
        return await super().watchall()


async def test_a_watch_set_up_during_an_election_is_asked_again_after_its_first_deadline() -> None:
    """The first set-up gives up after WATCH_SETUP_FIRST (1 s), not nats-py's 5 s, and the deadline grows
    after each that timed out (a loaded server still gets longer); the informer lists once the meta leader
    is there."""
    from drover.shared import informer as mod

    kv = _ElectingBucket()
    inf: Informer[NodeControl] = Informer(
        "nodectl", kv, NodeControl.from_wire, on_change=lambda k, v, r: None, poll=0.01,  # type: ignore[arg-type]
        is_empty=_yes,
    )
    assert inf.setup.timeout == mod.WATCH_SETUP_FIRST == 1.0
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.ensure_future(inf.run())
    try:
        await wait_for(lambda: kv.given_up == 1, timeout=3, interval=0.01)
        assert loop.time() - started < 1.9  # the first deadline, not nats-py's 5 s
        assert inf.setup.timeout == 2.0  # doubled for the next try
        kv.elected.set()
        await wait_for(lambda: inf.relists == 1, timeout=5)
        assert kv.given_up == 1 and inf.setup.timeout == mod.WATCH_SETUP_FIRST  # back to the first deadline
    finally:
        task.cancel()


class _Entry:
    def __init__(self, key: str, value: bytes, revision: int, delta: int) -> None:
        self.key, self.value, self.revision, self.delta, self.operation = key, value, revision, delta, None


class _EarlyMarkerWatch:
    """nats-py's watch on a loaded process: its end-of-listing marker (``None``) comes before the entries,
    which were already sent by the server; ``delta`` counts what is still pending after each entry."""

    def __init__(self, entries: list[_Entry]) -> None:
        self.queue: list[Any] = [None, *entries]

    async def updates(self, timeout: float) -> Any:
        if self.queue:
            return self.queue.pop(0)
        await asyncio.wait_for(asyncio.Event().wait(), timeout)

    async def stop(self) -> None:
        return None


class _FullBucket:
    def __init__(self, entries: list[_Entry]) -> None:
        self.entries = entries
        self.watches = 0

    async def watchall(self) -> _EarlyMarkerWatch:
        self.watches += 1
        return _EarlyMarkerWatch(list(self.entries))


async def test_an_end_marker_before_the_entries_does_not_end_the_listing() -> None:
    """A relist whose marker came first must not report the held keys deleted (nor the first listing end
    empty): the listing ends with the entry that has nothing pending after it."""
    a, b = NodeControl().to_wire(), NodeControl(cordoned=True).to_wire()
    kv = _FullBucket([_Entry("a", a, 1, 1), _Entry("b", b, 2, 0)])
    changes: list[tuple[str, Any, int]] = []
    asked: list[bool] = []

    async def not_empty() -> bool:
        asked.append(True)
        return False

    inf: Informer[NodeControl] = Informer(
        "nodectl", kv, NodeControl.from_wire,  # type: ignore[arg-type]
        on_change=lambda k, v, r: changes.append((k, v, r)), poll=0.01, is_empty=not_empty,
    )
    task = asyncio.ensure_future(inf.run())
    try:
        await wait_for(lambda: inf.relists == 1, timeout=5)
        assert set(inf.items) == {"a", "b"} and asked == [True] and inf.early_markers == 1
        inf.relist()
        await wait_for(lambda: inf.relists == 2, timeout=5)
        assert [c for c in changes if c[1] is None] == []  # no key ever reported deleted
        assert set(inf.items) == {"a", "b"} and inf.early_markers == 2
    finally:
        task.cancel()

