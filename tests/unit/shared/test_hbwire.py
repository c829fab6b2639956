"""Heartbeats in bounded parts (shared/hbwire.py): round trip, every part within the limit, bad input is a
WireError."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drover.shared import hbwire, wire
from drover.shared.errors import WireError
from drover.shared.models import ContainerState, ContainerStatus


def status(i: int, **kw: Any) -> dict[str, Any]:
    base = ContainerStatus(
        id=f"r1-{i:05d}abcd", container_id=f"{i:064x}", name=f"drover-web-r1-{i:05d}abcd", service="web",
        revision=3, state=ContainerState.RUNNING, ready=True, host_port=20000 + i % 1000,
        ports={"http": 20000 + i % 1000}, started_at=1.7e9 + i,
    )
    return base.model_copy(update=kw).model_dump(mode="json")


HEAD = {"node": "n1", "boot_id": "b" * 32, "seq": 7, "time": 1.7e9, "generation": 4, "service_rps": {"web": 1.5}}


def decode_all(parts: list[bytes]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    bodies = [wire.decode(p) for p in parts]
    containers = [hbwire.decode_entry(e) for b in bodies for e in hbwire.entries(b["cs"])]
    return bodies, containers


def test_round_trip_keeps_every_field() -> None:
    sts = [status(1), status(2, name="custom", message="boom", exit_code=3, restarts=2, ready=False,
                  state=ContainerState.CRASH_LOOP, cpu_percent=12.5, memory_percent=3.0, host_port=None, ports={})]
    bodies, back = decode_all(hbwire.encode(HEAD, sts, 1 << 20))
    assert back == sts
    assert [ContainerStatus.from_dict(c) for c in back] == [ContainerStatus.from_dict(s) for s in sts]
    assert bodies[0]["service_rps"] == {"web": 1.5} and bodies[0]["part"] == 0 and bodies[0]["parts"] == 1
    assert hbwire.is_parts(bodies[0]) and hbwire.part_numbers(bodies[0]) == (0, 1)


def test_ten_thousand_containers_fit_in_parts_under_one_mib() -> None:
    sts = [status(i) for i in range(10_000)]
    assert len(wire.encode({**HEAD, "containers": sts})) > 1 << 20  # the record format would not fit
    limit = hbwire.part_limit(1 << 20)
    parts = hbwire.encode(HEAD, sts, limit)
    assert len(parts) > 1 and all(len(p) <= limit for p in parts)
    bodies, back = decode_all(parts)
    assert back == sts
    assert [b["part"] for b in bodies] == list(range(len(parts))) and {b["parts"] for b in bodies} == {len(parts)}
    assert all(b["seq"] == 7 and b["node"] == "n1" for b in bodies)
    assert "service_rps" in bodies[0] and all("service_rps" not in b for b in bodies[1:])


def test_long_message_is_cut() -> None:
    _, back = decode_all(hbwire.encode(HEAD, [status(1, message="x" * 100_000)], 4096))
    assert back[0]["message"] == "x" * hbwire.MESSAGE_MAX


def test_header_too_big_for_a_part_raises() -> None:
    with pytest.raises(WireError):
        hbwire.encode({**HEAD, "service_rps": {f"s{i}": 1.0 for i in range(1000)}}, [status(1)], 2000)


def test_no_containers_is_one_part() -> None:
    parts = hbwire.encode(HEAD, [], 1000)
    assert len(parts) == 1 and hbwire.entries(wire.decode(parts[0])["cs"]) == []


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 300), limit=st.integers(600, 20_000), msg=st.text(max_size=600))
def test_every_part_is_within_the_limit(n: int, limit: int, msg: str) -> None:
    sts = [status(i, message=msg if i % 7 == 0 else "") for i in range(n)]
    parts = hbwire.encode(HEAD, sts, limit)
    assert all(len(p) <= limit for p in parts)
    _, back = decode_all(parts)
    assert [c["id"] for c in back] == [s["id"] for s in sts]


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_decoders_on_random_bytes_raise_only_wire_errors(data: bytes) -> None:
    for decoder in (hbwire.entries, hbwire.decode_entry):
        try:
            decoder(data)
        except WireError:
            pass


@pytest.mark.parametrize("body", [
    {"cs": b"", "part": 1, "parts": 1}, {"cs": b"", "part": -1, "parts": 2}, {"cs": b"", "part": 0, "parts": 10**6},
    {"cs": "text", "part": 0, "parts": 1}, {"cs": b"", "part": "0", "parts": 1},
])
def test_bad_part_numbers_are_wire_errors(body: dict[str, Any]) -> None:
    with pytest.raises(WireError):
        hbwire.part_numbers(body)


def test_unknown_state_code_is_a_wire_error() -> None:
    import msgpack

    with pytest.raises(WireError):
        hbwire.decode_entry(msgpack.packb({"i": "r1", "st": 99}))
