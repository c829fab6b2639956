"""Gossip nodes on loopback addresses (127.0.0.x only): endpoints spread, failures are detected, and
forged, replayed, malformed or oversized datagrams are dropped and counted without disturbing anything.

Every node's ed25519 identity is derived from its name here (as if kept under its data dir), and every node
trusts the same directory of public keys (what the agents read from the nodes bucket)."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest

from drover.agent.gossip import Endpoint, GossipConfig, GossipNode, Status, codec
from drover.agent.gossip.codec import Kind, Mode
from drover.agent.gossip.identity import NodeKey
from drover.agent.gossip.pairkeys import derive
from tests.fixtures import wait_for

KEY = b"test-cluster-key"
CFG = GossipConfig(sync_interval=0.5)


def identity(name: str) -> NodeKey:
    return NodeKey.from_seed(hashlib.sha256(name.encode()).digest())


DIRECTORY = {name: identity(name).public for name in [f"n{i}" for i in range(10)]}


def make_node(name: str, address: str, key: bytes = KEY, **kw: object) -> GossipNode:
    n = GossipNode(name, address, key, identity=identity(name), **kw)  # type: ignore[arg-type]
    n.trust(DIRECTORY)
    return n


def signed_by(
    sender: str,
    kind: Kind,
    rows: list[bytes],
    *,
    nonce: int | None = None,
    key: bytes = KEY,
    to: str = "n0",
    signed: bool = False,
    as_: NodeKey | None = None,
) -> bytes:
    """A datagram as ``sender`` itself would make it for ``to`` (a compromised or misbehaving member): MAC'd with
    their pair key, or ``signed``; ``as_`` makes it with another key pair than ``sender``'s own (a forger)."""
    n = time.time_ns() // 1000 if nonce is None else nonce
    body, _ = codec.pack(kind, sender, 0, rows, nonce=n, reply=kind is Kind.SYNC)
    own = as_ or identity(sender)
    if signed:
        return codec.seal_signed(sender, body, key, own)
    pair_key = derive(key, sender, own, to, identity(to).public)
    assert pair_key is not None
    return codec.seal_pair(sender, body, pair_key)


def ep(node: str, container: str, port: int, *, ready: bool = True, service: str = "web") -> Endpoint:
    return Endpoint(service, "127.0.0.1", port, node, container, 1, ready)


def seeds(nodes: list[GossipNode]) -> list[tuple[str, str, int]]:
    return [(n.name, n.address, n.port) for n in nodes]


Make = Callable[..., Awaitable[list[GossipNode]]]


def status(node: GossipNode, name: str) -> Status | None:
    m = node.member(name)
    return m.status if m is not None else None


@pytest.fixture
async def cluster() -> AsyncIterator[Make]:
    started: list[GossipNode] = []

    async def make(
        n: int, *, first: int = 0, key: bytes = KEY, config: GossipConfig = CFG, incarnation: int | None = None
    ) -> list[GossipNode]:
        nodes = [
            make_node(f"n{i}", f"127.0.0.{i + 1}", key, config=config, incarnation=incarnation)
            for i in range(first, first + n)
        ]
        for node in nodes:
            await node.start()
            started.append(node)
        return nodes

    yield make
    for node in started:
        await node.stop(leave=False)


async def joined(cluster: Make, n: int) -> list[GossipNode]:
    nodes = await cluster(n)
    for node in nodes[1:]:
        node.join(seeds(nodes[:1]))
    await wait_for(
        lambda: all(len([m for m in x.members() if m.status is Status.ALIVE]) == n for x in nodes),
        timeout=5,
        message=f"{n} nodes see each other alive",
    )
    return nodes


def send_raw(node: GossipNode, data: bytes, source: str = "127.0.0.1") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.sendto(data, (node.address, node.port))


async def test_endpoint_added_and_removed_on_one_node_appears_and_disappears_on_all(cluster: Make) -> None:
    nodes = await joined(cluster, 5)
    changes = [0]
    nodes[4].on_change(lambda: changes.__setitem__(0, changes[0] + 1))
    a, b = ep("n2", "c1", 31001), ep("n2", "c2", 31002)
    nodes[2].set_local_endpoints([a, b])
    await wait_for(lambda: all(n.endpoints("web") == [a, b] for n in nodes), timeout=3, message="added everywhere")
    assert changes[0] > 0
    nodes[2].set_local_endpoints([b])
    await wait_for(lambda: all(n.endpoints("web") == [b] for n in nodes), timeout=3, message="removed everywhere")
    nodes[2].set_local_endpoints([replace(b, ready=False)])
    await wait_for(lambda: all(n.endpoints("web") == [] for n in nodes), timeout=3, message="not ready everywhere")
    assert all(n.endpoints("web", ready_only=False) == [replace(b, ready=False)] for n in nodes)


async def test_many_endpoints_at_once_are_split_across_datagrams(cluster: Make) -> None:
    nodes = await joined(cluster, 4)
    many = [ep("n1", f"container-{i:03d}-0123456789", 32000 + i) for i in range(80)]
    nodes[1].set_local_endpoints(many)
    await wait_for(lambda: all(len(n.endpoints()) == 80 for n in nodes), timeout=5, message="80 endpoints everywhere")
    assert all(n.stats["dropped_oversize"] == 0 for n in nodes)


async def test_a_late_joiner_gets_the_full_table(cluster: Make) -> None:
    nodes = await joined(cluster, 3)
    nodes[0].set_local_endpoints([ep("n0", "c1", 31001)])
    await wait_for(lambda: all(len(n.endpoints()) == 1 for n in nodes), timeout=3)
    late = (await cluster(1, first=3))[0]
    late.join(seeds(nodes[2:3]))
    await wait_for(
        lambda: late.endpoints() == nodes[0].endpoints() and len(late.members()) == 4,
        timeout=3,
        message="late joiner synced",
    )


async def test_killed_node_is_declared_dead_by_all_and_its_endpoints_dropped(cluster: Make) -> None:
    nodes = await joined(cluster, 5)
    nodes[3].set_local_endpoints([ep("n3", "c1", 31001)])
    await wait_for(lambda: all(len(n.endpoints()) == 1 for n in nodes), timeout=3)
    await nodes[3].stop(leave=False)
    rest = nodes[:3] + nodes[4:]
    await wait_for(lambda: all(status(n, "n3") is Status.DEAD for n in rest), timeout=4, message="n3 dead everywhere")
    assert all(n.endpoints() == [] for n in rest)


async def test_graceful_stop_announces_left(cluster: Make) -> None:
    nodes = await joined(cluster, 4)
    await nodes[1].stop()
    rest = [nodes[0], *nodes[2:]]
    await wait_for(lambda: all(status(n, "n1") is Status.LEFT for n in rest), timeout=2, message="n1 left everywhere")


async def test_restarted_node_overrides_its_dead_state_and_old_endpoints(cluster: Make) -> None:
    nodes = await joined(cluster, 4)
    old = nodes[3]
    old.set_local_endpoints([ep("n3", "old", 31001)])
    await wait_for(lambda: all(len(n.endpoints()) == 1 for n in nodes), timeout=3)
    await old.stop(leave=False)
    await wait_for(lambda: all(status(n, "n3") is Status.DEAD for n in nodes[:3]), timeout=4)
    new = make_node("n3", "127.0.0.4", config=CFG, incarnation=old.incarnation + 1000)
    new.set_local_endpoints([ep("n3", "new", 31002)])
    await new.start()
    try:
        new.join(seeds(nodes[:1]))
        await wait_for(
            lambda: all(
                status(n, "n3") is Status.ALIVE and [e.container for e in n.endpoints()] == ["new"] for n in nodes[:3]
            ),
            timeout=3,
            message="restart wins over the old life",
        )
    finally:
        await new.stop(leave=False)


async def test_a_node_refutes_a_false_death_claim(cluster: Make) -> None:
    nodes = await joined(cluster, 3)
    victim = nodes[2].member("n2")
    assert victim is not None
    lie = replace(victim, status=Status.DEAD)  # SWIM lets n1 say so, at n2's own incarnation
    send_raw(nodes[0], signed_by("n1", Kind.GOSSIP, [codec.encode_update(lie)]))
    await wait_for(lambda: nodes[2].stats["refutations"] >= 1, timeout=10, message="n2 refuted")

    def refuted(n: GossipNode) -> bool:
        m = n.member("n2")
        return m is not None and m.status is Status.ALIVE and m.incarnation > victim.incarnation

    await wait_for(lambda: all(refuted(n) for n in nodes), timeout=3, message="n2 alive again everywhere")


async def test_forged_malformed_and_oversized_packets_are_dropped_and_counted(cluster: Make) -> None:
    nodes = await joined(cluster, 3)
    target = nodes[0]
    before = [(m.name, m.status) for m in target.members()]
    victim = nodes[1].member("n1")
    assert victim is not None
    forged_updates = [
        codec.encode_update(replace(victim, status=Status.DEAD)),
        codec.encode_update(codec.decode_update([1, "n1", "evil", 31337, 2**40, 1, True, "web", "127.0.0.1", 1, True])),
    ]
    forged = signed_by("n1", Kind.GOSSIP, forged_updates, key=b"wrong-key", signed=True)
    good_ping = signed_by("n1", Kind.PING, [], signed=True)
    send_raw(target, forged)
    send_raw(target, b"\x00garbage")
    send_raw(target, good_ping[:-1] + bytes((good_ping[-1] ^ 0xFF,)))  # tampered: auth failure
    head = codec._head(Mode.SIGNED, "n1")
    rest = bytes(64) + b"\xc1"
    send_raw(target, head + codec._mac(KEY, head + rest) + rest)  # keyed, not msgpack
    pair_key = derive(KEY, "n1", identity("n1"), "n0", identity("n0").public)
    assert pair_key is not None
    send_raw(target, codec.seal_pair("n1", b"\xc1", pair_key))  # a good pair MAC over something not msgpack
    send_raw(target, b"x" * 4000)
    send_raw(target, b"DG\x09" + b"\x00" * 120)
    send_raw(target, b"DG\x02" + good_ping[3:])  # the previous version (every datagram signed)
    await wait_for(
        lambda: (
            target.stats["dropped_auth"] >= 2
            and target.stats["dropped_malformed"] >= 3
            and target.stats["dropped_oversize"] >= 1
            and target.stats["dropped_version"] >= 2
        ),
        timeout=2,
        message="drops counted",
    )
    assert target.stats["handler_errors"] == 0
    assert [(m.name, m.status) for m in target.members()] == before
    assert target.endpoints() == []
    # and it still works
    nodes[2].set_local_endpoints([ep("n2", "c1", 31001)])
    await wait_for(lambda: len(target.endpoints()) == 1, timeout=3)


async def test_a_foreign_cluster_never_mixes_in(cluster: Make) -> None:
    ours = await joined(cluster, 2)
    other = make_node("x0", "127.0.0.9", b"another-key", config=CFG)
    await other.start()
    try:
        other.join(seeds(ours))
        ours[0].join([("x0", other.address, other.port)])
        await wait_for(lambda: ours[0].stats["dropped_auth"] >= 1 and other.stats["dropped_auth"] >= 1, timeout=10)
        assert {m.name for m in ours[0].members()} == {"n0", "n1"}
        assert {m.name for m in other.members()} == {"x0"}
    finally:
        await other.stop(leave=False)


async def test_an_unreachable_seed_adds_no_member(cluster: Make) -> None:
    nodes = await joined(cluster, 2)
    nodes[0].join([("ghost", "127.0.0.77", 9)])  # nothing listens there
    nodes[1].set_local_endpoints([ep("n1", "c1", 31001)])
    await wait_for(lambda: len(nodes[0].endpoints()) == 1, timeout=3)
    assert {m.name for m in nodes[0].members()} == {"n0", "n1"}


async def test_a_briefly_unreachable_node_is_suspected_then_refutes(cluster: Make) -> None:
    nodes = await joined(cluster, 4)
    mute = nodes[3]
    inc = mute.incarnation
    mute._on_datagram = lambda data, addr: None  # type: ignore[method-assign]  # deaf: acks never go out
    try:
        await wait_for(
            lambda: any(status(n, "n3") is Status.SUSPECT for n in nodes[:3]), timeout=5, message="n3 suspected"
        )
    finally:
        del mute._on_datagram  # hears again: learns the suspicion and refutes it
    await wait_for(lambda: mute.stats["refutations"] >= 1, timeout=10, message="n3 refuted")

    def back(n: GossipNode) -> bool:
        m = n.member("n3")
        return m is not None and m.status is Status.ALIVE and m.incarnation > inc

    await wait_for(lambda: all(back(n) for n in nodes[:3]), timeout=3, message="n3 alive again everywhere")


async def test_a_failing_change_callback_is_counted_not_fatal(cluster: Make) -> None:
    nodes = await joined(cluster, 2)

    def boom() -> None:
        raise RuntimeError("callback bug")

    nodes[0].on_change(boom)
    nodes[1].set_local_endpoints([ep("n1", "c1", 31001)])
    await wait_for(lambda: len(nodes[0].endpoints()) == 1 and nodes[0].stats["callback_errors"] >= 1, timeout=3)
    nodes[1].set_local_endpoints([])
    await wait_for(lambda: nodes[0].endpoints() == [], timeout=3)


async def test_far_future_incarnations_and_epochs_are_dropped(cluster: Make) -> None:
    """Even with the cluster key, a node cannot be declared dead for good (incarnation far past the clock or
    2^64 - 1), nor a service's endpoints redirected with a huge epoch: dropped and counted."""
    nodes = await joined(cluster, 3)
    target = nodes[0]
    victim = target.member("n1")
    assert victim is not None
    far = time.time_ns() // 1_000_000 + 10 * 3_600_000
    rows = [
        codec.encode_update(replace(victim, status=Status.DEAD, incarnation=far)),
        codec.encode_update(codec.decode_update([1, "n1", "evil", 31337, far, 1, True, "web", "127.0.0.1", 1, True])),
    ]
    send_raw(target, signed_by("n2", Kind.GOSSIP, rows))
    for huge in (replace(victim, status=Status.DEAD, incarnation=2**64 - 1), replace(victim, epoch=2**64 - 1)):
        send_raw(target, signed_by("n2", Kind.GOSSIP, [codec.encode_update(huge)]))  # a well-MAC'd datagram
        send_raw(target, signed_by("n1", Kind.GOSSIP, [codec.encode_update(huge, identity("n1"))]))  # n1's own
    await wait_for(
        lambda: target.stats["dropped_implausible"] >= 2 and target.stats["dropped_malformed"] >= 4,
        timeout=3,
        message=f"{target.stats}",
    )
    m = target.member("n1")
    assert m is not None and m.status is Status.ALIVE
    assert target.endpoints() == []


async def test_a_member_cannot_speak_for_another_node(cluster: Make) -> None:
    """n2 (a real member, signing as itself) claims things only n1 may say: n1 left, n1 dead at an incarnation
    n1 never announced, n1 alive elsewhere, n1's endpoints; and a record it signed itself in n1's name. All
    dropped and counted; n1 stays alive with its own address and no endpoints."""
    nodes = await joined(cluster, 3)
    target = nodes[0]
    victim = target.member("n1")
    assert victim is not None
    redirect = codec.decode_update([1, "n1", "evil", 31337, victim.epoch, 99, True, "web", "127.0.0.9", 1, True])
    unsigned = [
        codec.encode_update(replace(victim, status=Status.LEFT)),
        codec.encode_update(replace(victim, status=Status.DEAD, incarnation=victim.incarnation + 5)),
        codec.encode_update(replace(victim, address="127.0.0.9", incarnation=victim.incarnation + 5)),
        codec.encode_update(redirect),
    ]
    forged = [  # "signed" records, but with n2's key, not n1's
        codec.encode_update(replace(victim, status=Status.DEAD, incarnation=victim.incarnation + 5), identity("n2")),
        codec.encode_update(redirect, identity("n2")),
    ]
    send_raw(target, signed_by("n2", Kind.GOSSIP, unsigned + forged))
    await wait_for(
        lambda: target.stats["dropped_unsigned"] >= 4 and target.stats["dropped_forged"] >= 2,
        timeout=3,
        message="drops counted",
    )
    assert target.member("n1") == victim
    assert target.endpoints() == []
    assert nodes[1].stats["refutations"] == 0  # nothing reached n1 that it had to refute


async def test_a_swim_death_claim_cannot_kill_a_node_for_good(cluster: Make) -> None:
    """n2 keeps declaring n1 dead at n1's current incarnation (which SWIM allows); each time n1 refutes with a
    higher, signed incarnation that only it can make, and the cluster sees n1 alive again."""
    nodes = await joined(cluster, 3)
    for round_ in range(3):
        victim = nodes[0].member("n1")
        assert victim is not None
        send_raw(nodes[0], signed_by("n2", Kind.GOSSIP, [codec.encode_update(replace(victim, status=Status.DEAD))]))
        await wait_for(lambda r=round_: nodes[1].stats["refutations"] > r, timeout=10, message="n1 refuted")

        def back(n: GossipNode, inc: int = victim.incarnation) -> bool:
            m = n.member("n1")
            return m is not None and m.status is Status.ALIVE and m.incarnation > inc

        await wait_for(lambda: all(back(n) for n in nodes), timeout=3, message="n1 alive again everywhere")


async def test_unknown_senders_bad_signatures_and_replays_are_dropped_and_counted(cluster: Make) -> None:
    nodes = await joined(cluster, 3)
    target = nodes[0]
    before = dict(target.stats)
    stranger = NodeKey.generate()
    now = time.time_ns() // 1000
    body, _ = codec.pack(Kind.PING, "ghost", 1, [], nonce=now)  # published no key
    send_raw(target, codec.seal_signed("ghost", body, KEY, stranger))
    send_raw(target, signed_by("ghost", Kind.PING, [], as_=stranger, nonce=now))
    send_raw(target, signed_by("n1", Kind.PING, [], as_=stranger, nonce=now, signed=True))  # n1's name, another key
    send_raw(target, signed_by("n1", Kind.PING, [], as_=stranger, nonce=now))  # the same, MAC'd
    victim = target.member("n2")
    assert victim is not None
    lie = signed_by("n1", Kind.GOSSIP, [codec.encode_update(replace(victim, status=Status.SUSPECT))], nonce=now)
    send_raw(target, lie)
    send_raw(target, lie)  # replayed
    send_raw(target, signed_by("n1", Kind.PING, [], nonce=now - 120_000_000))  # older than the window
    await wait_for(
        lambda: (
            target.stats["dropped_unknown_sender"] >= before["dropped_unknown_sender"] + 2
            and target.stats["dropped_signature"] >= before["dropped_signature"] + 2
            and target.stats["dropped_replay"] >= before["dropped_replay"] + 2
        ),
        timeout=3,
        message="drops counted",
    )
    assert target.stats["handler_errors"] == 0


async def test_a_datagram_made_for_another_node_or_sent_back_to_its_sender_is_dropped(cluster: Make) -> None:
    """A pair MAC binds a datagram to its two ends: n1's datagram for n2 does not verify at n0 (a captured
    datagram cannot be re-addressed), and n0's own datagram sent back to n0 is refused."""
    nodes = await joined(cluster, 3)
    target = nodes[0]
    before = dict(target.stats)
    victim = target.member("n2")
    assert victim is not None
    lie = [codec.encode_update(replace(victim, status=Status.SUSPECT))]
    send_raw(target, signed_by("n1", Kind.GOSSIP, lie, to="n2"))
    send_raw(target, signed_by("n0", Kind.GOSSIP, lie, to="n1"))
    send_raw(target, signed_by("n2", Kind.GOSSIP, lie, as_=identity("n1")))  # n1's key, n2's name
    await wait_for(
        lambda: (
            target.stats["dropped_signature"] >= before["dropped_signature"] + 2
            and target.stats["dropped_replay"] >= before["dropped_replay"] + 1
        ),
        timeout=3,
        message="drops counted",
    )
    assert target.stats["handler_errors"] == 0


async def test_steady_traffic_is_pair_maced_and_only_sync_requests_are_signed(cluster: Make) -> None:
    nodes = await joined(cluster, 3)
    await wait_for(
        lambda: all(n.stats["packets_out"] >= 40 for n in nodes), timeout=10, message="some traffic went out"
    )
    for n in nodes:
        # one signed body per sync request (the rest of a sync, pings, acks and pushes: pair MACs)
        assert 0 < n.stats["signed_out"] <= n.stats["syncs"]
        assert n.stats["packets_out"] >= 3 * n.stats["signed_out"], n.stats
        assert n.stats["dropped_signature"] == n.stats["dropped_unknown_sender"] == 0


async def test_a_node_nobody_trusts_yet_gets_the_state_but_is_heard_only_once_trusted(cluster: Make) -> None:
    """A new node's key is not in the others' directories until it registers: its (signed) sync request is
    answered with their (signed) state, but nothing it says is taken; once trusted, it is a full member."""
    nodes = await joined(cluster, 3)
    newcomer = GossipNode("x1", "127.0.0.9", KEY, identity=NodeKey.from_seed(b"x" * 32), config=CFG)
    newcomer.trust(DIRECTORY)
    await newcomer.start()
    try:
        newcomer.set_local_endpoints([ep("x1", "c1", 31001)])
        newcomer.join(seeds(nodes[:1]))
        await wait_for(
            lambda: {"n0", "n1", "n2"} <= {m.name for m in newcomer.members()}, timeout=5, message="state received"
        )
        await wait_for(lambda: nodes[0].stats["dropped_unknown_sender"] >= 1, timeout=5, message="not heard yet")
        assert all(n.member("x1") is None and n.endpoints() == [] for n in nodes)
        for n in nodes:
            n.trust({**DIRECTORY, "x1": newcomer.public_key})

        def full_member(n: GossipNode) -> bool:
            return status(n, "x1") is Status.ALIVE and len(n.endpoints()) == 1

        def sees_all(n: GossipNode) -> bool:
            return all(status(n, m) is Status.ALIVE for m in ("n0", "n1", "n2"))

        await wait_for(
            lambda: all(full_member(n) for n in nodes) and sees_all(newcomer), timeout=10, message="x1 joined"
        )
    finally:
        await newcomer.stop(leave=False)


async def test_a_node_restarted_with_a_new_key_gets_the_state_but_is_not_heard_with_it(cluster: Make) -> None:
    """n3 comes back with a key nobody has yet (its data dir was lost): its signed sync request fails the
    signature check against its old published key and is counted, but it is answered with the state (signed,
    which n3 can check); its pair-MAC'd datagrams do not verify and change nothing."""
    nodes = await joined(cluster, 3)
    rekeyed = GossipNode("n3", "127.0.0.4", KEY, identity=NodeKey.from_seed(b"new" * 10 + b"n3"), config=CFG)
    rekeyed.trust(DIRECTORY)
    await rekeyed.start()
    try:
        rekeyed.set_local_endpoints([ep("n3", "c1", 31001)])
        rekeyed.join(seeds(nodes[:1]))
        await wait_for(
            lambda: {"n0", "n1", "n2"} <= {m.name for m in rekeyed.members()}, timeout=5, message="state received"
        )
        await wait_for(lambda: nodes[0].stats["dropped_signature"] >= 1, timeout=5, message="old key refused")
        assert all(n.member("n3") is None and n.endpoints() == [] for n in nodes)
    finally:
        await rekeyed.stop(leave=False)
