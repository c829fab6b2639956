"""The gossip key directory comes from the nodes bucket, by key (the node the server vouched for)."""

from __future__ import annotations

from drover.agent.discovery.keys import gossip_keys_of
from drover.agent.gossip.identity import NodeKey
from drover.shared.models import NodeRegistration


def test_keys_by_bucket_key_and_malformed_ones_left_out() -> None:
    a, b = NodeKey.generate(), NodeKey.generate()
    records = {
        "a": NodeRegistration(name="a", gossip_pubkey=a.public_hex),
        "b": NodeRegistration(name="a", gossip_pubkey=b.public_hex),  # a body naming another node: keyed "b"
        "c": NodeRegistration(name="c", gossip_pubkey="not-hex"),
        "d": NodeRegistration(name="d"),  # an older agent, no key yet
    }
    assert gossip_keys_of(records) == {"a": a.public, "b": b.public}


def test_the_registration_round_trips_its_key() -> None:
    k = NodeKey.generate()
    reg = NodeRegistration(name="n", gossip_pubkey=k.public_hex)
    assert NodeRegistration.from_wire(reg.to_wire()).gossip_pubkey == k.public_hex
