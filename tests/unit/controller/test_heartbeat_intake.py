"""The controller's heartbeat intake (controller/heartbeats.py): parts assembled per node, every part heard,
an unchanged heartbeat only touches, only new container entries decoded, the record format still accepted,
a body naming another node dropped."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from drover.controller import heartbeats
from drover.controller.heartbeats import HeartbeatIntake, Outcome
from drover.shared import hbwire, wire
from drover.shared.errors import WireError
from drover.shared.models import ContainerState, ContainerStatus, Heartbeat

NODE = "n1"  # the node of the subject the heartbeat came on


def status(i: int, state: ContainerState = ContainerState.RUNNING) -> dict[str, Any]:
    return ContainerStatus(id=f"r{i:05d}", service="web", revision=1, state=state, ready=True,
                           container_id=f"{i:064x}").model_dump(mode="json")


def parts(sts: list[dict[str, Any]], *, seq: int = 1, node: str = "n1", limit: int = 4096,
          boot: str = "b1") -> list[bytes]:
    head = {"node": node, "boot_id": boot, "seq": seq, "time": 1.0, "generation": 2, "service_rps": {"web": 1.0}}
    return hbwire.encode(head, sts, limit)


class Recorder:
    def __init__(self) -> None:
        self.touched: list[str] = []
        self.applied: list[Heartbeat] = []
        self.known = True

    def touch(self, node: str, now: float) -> bool:
        self.touched.append(node)
        return self.known and bool(self.applied)

    def apply(self, hb: Heartbeat, now: float) -> bool:
        self.applied.append(hb)
        return True


def intake() -> tuple[HeartbeatIntake, Recorder]:
    r = Recorder()
    return HeartbeatIntake(r.touch, r.apply), r


def test_parts_are_assembled_and_each_part_is_heard() -> None:
    i, r = intake()
    sts = [status(n) for n in range(200)]
    ps = parts(sts)
    assert len(ps) > 2
    outcomes = [i.feed(NODE, p, 1.0) for p in ps]
    assert outcomes[:-1] == [Outcome.PARTIAL] * (len(ps) - 1) and outcomes[-1] is Outcome.CHANGED
    assert len(r.touched) >= len(ps) - 1  # every part refreshed the node's time
    assert len(r.applied) == 1
    hb = r.applied[0]
    assert [c.id for c in hb.containers] == [s["id"] for s in sts]
    assert hb.node == "n1" and hb.seq == 1 and hb.generation == 2 and hb.service_rps == {"web": 1.0}


def test_unchanged_heartbeat_only_touches_and_decodes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    i, r = intake()
    sts = [status(n) for n in range(50)]
    for p in parts(sts, seq=1):
        i.feed(NODE, p, 1.0)
    decoded: list[bytes] = []
    real = hbwire.decode_entry
    monkeypatch.setattr(heartbeats.hbwire, "decode_entry", lambda e: decoded.append(e) or real(e))
    outcomes = [i.feed(NODE, p, 2.0) for p in parts(sts, seq=2)]
    assert outcomes[-1] is Outcome.TOUCHED and len(r.applied) == 1 and decoded == []
    # one container changes: only its entry is decoded, the others keep their objects
    sts[10] = status(10, ContainerState.EXITED)
    for p in parts(sts, seq=3):
        i.feed(NODE, p, 3.0)
    assert len(r.applied) == 2 and len(decoded) == 1
    before, after = r.applied
    assert after.containers[10].state is ContainerState.EXITED
    assert after.containers[0] is before.containers[0]


def test_a_newer_heartbeat_drops_an_incomplete_one() -> None:
    i, r = intake()
    sts = [status(n) for n in range(200)]
    old = parts(sts, seq=1)
    i.feed(NODE, old[0], 1.0)  # the rest of seq 1 never comes
    for p in parts(sts[:100], seq=2):
        i.feed(NODE, p, 1.0)
    assert i.incomplete_dropped == 1 and len(r.applied) == 1 and len(r.applied[0].containers) == 100
    for p in old[1:]:  # late parts of the dropped heartbeat complete nothing
        assert i.feed(NODE, p, 1.0) is Outcome.PARTIAL
    assert len(r.applied) == 1


def test_a_new_boot_is_a_new_heartbeat() -> None:
    i, r = intake()
    sts = [status(n) for n in range(5)]
    i.feed(NODE, parts(sts, boot="b1")[0], 1.0)
    assert i.feed(NODE, parts(sts, boot="b2")[0], 1.0) is Outcome.CHANGED
    assert [hb.boot_id for hb in r.applied] == ["b1", "b2"]


def test_a_lost_or_unknown_node_is_applied_even_when_unchanged() -> None:
    i, r = intake()
    sts = [status(n) for n in range(5)]
    i.feed(NODE, parts(sts)[0], 1.0)
    r.known = False  # touch() says its time alone is not enough (e.g. it was lost meanwhile)
    assert i.feed(NODE, parts(sts, seq=2)[0], 9.0) is Outcome.CHANGED and len(r.applied) == 2


def test_body_naming_another_node_is_dropped() -> None:
    i, r = intake()
    with pytest.raises(WireError):
        i.feed(NODE, parts([status(1)], node="n2")[0], 1.0)
    assert r.applied == [] and r.touched == []


def test_record_format_of_older_agents_is_accepted() -> None:
    i, r = intake()
    old = Heartbeat(node="n1", boot_id="b", seq=1, containers=[ContainerStatus.from_dict(status(1))]).to_wire()
    assert i.feed(NODE, old, 1.0) is Outcome.CHANGED
    assert i.feed(NODE, old, 2.0) is Outcome.TOUCHED
    assert r.applied[0].containers[0].id == "r00001"


def test_bad_entries_are_wire_errors() -> None:
    i, _ = intake()

    bad = wire.encode({"node": "n1", "seq": 1, "part": 0, "parts": 1, "cs": b"\xc1"})
    with pytest.raises(WireError):
        i.feed(NODE, bad, 1.0)
    not_a_map = msgpack.packb([b"\x01"], use_bin_type=True)  # an entry that is the number 1
    bad = wire.encode({"node": "n1", "seq": 1, "part": 0, "parts": 1, "cs": not_a_map})
    with pytest.raises(WireError):
        i.feed(NODE, bad, 1.0)
