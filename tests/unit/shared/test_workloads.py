"""Workload spec fields: volume/file path validation, schedules and their next tick."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drover.shared.manifest import ManifestError, ServiceSpec, parse_manifests, spec_hash
from drover.shared.workloads import file_mode, next_tick, parse_schedule, privileged_mounts


def _problems(spec: dict[str, object]) -> list[str]:
    doc = {"apiVersion": "drover/v1", "kind": "Service", "metadata": {"name": "w"}, "spec": spec}
    try:
        parse_manifests([("m.json", json.dumps(doc))])
    except ManifestError as exc:
        return exc.lines()
    return []


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        ({"host": "data", "container": "/d"}, "spec.volumes[0].host: must be an absolute path"),
        ({"host": "/a/../etc", "container": "/d"}, "spec.volumes[0].host: must not contain '..'"),
        ({"host": "/a", "container": "d"}, "spec.volumes[0].container: must be an absolute path"),
        ({"host": "/a", "container": "/x/../.."}, "spec.volumes[0].container: must not contain '..'"),
        ({"volume": "v", "container": "/"}, "spec.volumes[0].container: must not be /"),
        ({"volume": "-v", "container": "/d"}, "spec.volumes[0].volume: must be a volume name"),
        ({"container": "/d"}, "spec.volumes[0]: exactly one of host, volume is required"),
        ({"host": "/a", "volume": "v", "container": "/d"}, "spec.volumes[0]: exactly one of host, volume"),
    ],
)
def test_bad_volumes_are_rejected_with_their_path(volume: dict[str, object], message: str) -> None:
    lines = _problems({"image": "i", "volumes": [volume]})
    assert any(line.startswith(f"m.json[doc 1] {message}") for line in lines), lines


def test_good_volumes_and_files_pass() -> None:
    spec = {
        "image": "i",
        "volumes": [{"host": "/var/lib/web", "container": "/data"}, {"volume": "cache", "container": "/c"}],
        "files": [{"path": "/etc/a.conf", "content": "x\n", "mode": "0600"}, {"path": "/run/s", "secret": "db"}],
    }
    assert _problems(spec) == []
    parsed = ServiceSpec.model_validate(spec)
    assert [f.mode for f in parsed.files] == ["0600", "0400"]


def test_limits_and_duplicates() -> None:
    many = [{"volume": f"v{i}", "container": f"/d{i}"} for i in range(101)]
    lines = _problems({"image": "i", "volumes": many})
    assert any("spec.volumes: must have at most 100 items" in line for line in lines)
    dup = [{"path": "/a", "content": ""}, {"path": "/a/", "content": ""}]
    lines = _problems({"image": "i", "files": dup})
    assert any("spec.files[1].path: duplicates spec.files[0].path" in line for line in lines)


def test_mode_rules() -> None:
    lines = _problems({"image": "i", "schedule": "@every 5s"})
    assert any("spec.schedule: only allowed with mode: job" in x for x in lines)
    assert any("spec.restart: must be on-failure or never" in x
               for x in _problems({"image": "i", "mode": "job", "restart": "always"}))
    assert any("spec.autoscale: not allowed with mode: global" in x
               for x in _problems({"image": "i", "mode": "global", "autoscale": {"cpu_percent": 50}}))


def test_job_defaults_spelt_out_or_not_hash_the_same() -> None:
    short = {"image": "i", "mode": "job"}
    long = {"image": "i", "mode": "job", "restart": "on-failure", "job": {"completions": 1, "parallelism": 1,
            "backoff_limit": 3}, "files": [], "pull": "if-missing"}
    assert spec_hash(short) == spec_hash(long)
    assert ServiceSpec.model_validate(short).restart == "on-failure"


def test_privileged_mounts_are_listed() -> None:
    volumes = [{"host": "/", "container": "/h"}, {"host": "/var/run/docker.sock", "container": "/s"},
               {"host": "/srv/data", "container": "/d"}, {"volume": "v", "container": "/v"}]
    spec = ServiceSpec.model_validate({"image": "i", "volumes": volumes})
    assert [p for p, _ in privileged_mounts(spec)] == ["spec.volumes[0].host", "spec.volumes[1].host"]


@pytest.mark.parametrize(("value", "mode"), [("0644", "0644"), ("600", "0600"), (0o755, "0755"), (0, "0000")])
def test_file_mode(value: object, mode: str) -> None:
    assert file_mode(value) == mode


@pytest.mark.parametrize("value", ["0999", "rw", 0o1777, True, "06444"])
def test_bad_file_mode(value: object) -> None:
    with pytest.raises(ValueError):
        file_mode(value)


def test_cron_next_tick_is_utc() -> None:
    assert next_tick("*/5 * * * *", _ts("2026-12-01T10:02:30")) == _ts("2026-12-01T10:05:00")
    assert next_tick("0 3 * * *", _ts("2026-12-01T10:00:00")) == _ts("2026-12-02T03:00:00")
    assert next_tick("*/5 * * * *", _ts("2026-12-01T10:05:00")) == _ts("2026-12-01T10:10:00")


def test_every() -> None:
    assert parse_schedule("@every 30s") == ("every", 30.0)
    assert next_tick("@every 1m", 100.0) == 160.0


@pytest.mark.parametrize("bad", ["* * * *", "* * * * * *", "61 * * * *", "@every 0s", "@every x", "@daily", ""])
def test_bad_schedules(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_schedule(bad)


@given(
    minute=st.integers(0, 59), hour=st.integers(0, 23),
    now=st.floats(min_value=1.7e9, max_value=2.0e9, allow_nan=False),
)
def test_cron_next_tick_properties(minute: int, hour: int, now: float) -> None:
    tick = next_tick(f"{minute} {hour} * * *", now)
    at = datetime.fromtimestamp(tick, tz=UTC)
    assert now < tick <= now + 86400
    assert (at.minute, at.hour, at.second) == (minute, hour, 0)


@given(path=st.lists(st.sampled_from(["a", "..", ".", "b", ""]), min_size=1, max_size=5))
def test_paths_with_dotdot_never_pass(path: list[str]) -> None:
    text = "/" + "/".join(path)
    lines = _problems({"image": "i", "volumes": [{"host": text, "container": "/d"}]})
    assert (".." in path) == any("must not contain '..'" in line for line in lines)
