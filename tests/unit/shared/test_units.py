from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drover.shared.limits import MAX_CPU, MAX_DURATION
from drover.shared.units import (
    CPU_HINT,
    DURATION_HINT,
    MEMORY_HINT,
    format_cpu,
    format_duration,
    format_memory,
    parse_cpu,
    parse_duration,
    parse_memory,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("2s", 2.0),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1h2m3s", 3723.0),
        ("1.5s", 1.5),
        ("0s", 0.0),
        ("0", 0.0),
        ("10", 10.0),
        ("2.5", 2.5),
        (" 3s ", 3.0),
        ("250us", 0.00025),
        (5, 5.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "abc", "1x", "s", "1 s", "1m 30s", "2ss", "nan", "inf", True, None, [1]])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^must be a duration like 500ms, 2s or 1m$"):
        parse_duration(bad)  # type: ignore[arg-type]
    assert DURATION_HINT == "must be a duration like 500ms, 2s or 1m"


@pytest.mark.parametrize("bad", ["-1s", "-5", -1, -0.5])
def test_parse_duration_negative(bad: str | float) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_parse_duration_not_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.5, "500ms"), (2.0, "2s"), (60.0, "1m"), (3600.0, "1h"), (90.0, "1m30s"), (0.0, "0s"), (1.5, "1.5s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("text", "nbytes"),
    [
        ("64Mi", 64 * 1024**2),
        ("1Gi", 1024**3),
        ("512Ki", 512 * 1024),
        ("1G", 10**9),
        ("1M", 10**6),
        ("100k", 100_000),
        ("1.5Gi", 1536 * 1024**2),
        ("129e6", 129_000_000),
        ("1024", 1024),
        (1024, 1024),
        ("0.5", 1),  # fractional bytes round up, as in Kubernetes
        ("0", 0),
    ],
)
def test_parse_memory(text: str | int, nbytes: int) -> None:
    assert parse_memory(text) == nbytes


@pytest.mark.parametrize("bad", ["", "64MB", "1K", "lots", "1 Gi", "64mi", "1m", True, None])
def test_parse_memory_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match=f"^{MEMORY_HINT}$"):
        parse_memory(bad)  # type: ignore[arg-type]


def test_parse_memory_negative() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        parse_memory("-1Mi")


@pytest.mark.parametrize(
    ("nbytes", "text"),
    [
        (67108864, "64Mi"),
        (1024**3, "1Gi"),
        (1536 * 1024**2, "1536Mi"),
        (10**9, "1G"),
        (1500, "1500"),
        (0, "0"),
    ],
)
def test_format_memory(nbytes: int, text: str) -> None:
    assert format_memory(nbytes) == text


@pytest.mark.parametrize(
    ("text", "cores"),
    [("0.25", 0.25), ("1", 1.0), ("250m", 0.25), ("1500m", 1.5), (2, 2.0), (0.5, 0.5), ("0", 0.0)],
)
def test_parse_cpu(text: str | float, cores: float) -> None:
    assert parse_cpu(text) == cores


@pytest.mark.parametrize("bad", ["", "lots", "1 core", "250M", "1mm", True, None])
def test_parse_cpu_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match=f"^{CPU_HINT}$"):
        parse_cpu(bad)  # type: ignore[arg-type]


def test_parse_cpu_negative() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        parse_cpu("-250m")


@pytest.mark.parametrize(
    ("cores", "text"), [(0.25, "250m"), (1.0, "1"), (2.0, "2"), (1.5, "1.5"), (0.1, "100m")]
)
def test_format_cpu(cores: float, text: str) -> None:
    assert format_cpu(cores) == text


@pytest.mark.parametrize("bad", [-1.0, math.inf, math.nan])
def test_formatters_reject(bad: float) -> None:
    with pytest.raises(ValueError):
        format_duration(bad)
    with pytest.raises(ValueError):
        format_cpu(bad)


finite_non_negative = st.floats(min_value=0, max_value=MAX_CPU, allow_nan=False, allow_infinity=False)
durations_s = st.floats(min_value=0, max_value=MAX_DURATION, allow_nan=False, allow_infinity=False)


@given(durations_s)
def test_duration_round_trip(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=10**7).map(lambda ms: ms / 1000))
def test_duration_round_trip_millis(seconds: float) -> None:
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
    assert "e" not in text


@given(st.integers(min_value=0, max_value=2**62))
def test_memory_round_trip(nbytes: int) -> None:
    assert parse_memory(format_memory(nbytes)) == nbytes


@given(st.integers(min_value=1, max_value=2**40).map(lambda n: n * 1024))
def test_memory_binary_format(nbytes: int) -> None:
    assert format_memory(nbytes).endswith(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))


@given(finite_non_negative)
def test_cpu_round_trip(cores: float) -> None:
    assert parse_cpu(format_cpu(cores)) == cores


@given(st.integers(min_value=0, max_value=100_000))
def test_cpu_millis_round_trip(millis: int) -> None:
    cores = millis / 1000
    assert parse_cpu(f"{millis}m") == cores
    assert parse_cpu(format_cpu(cores)) == cores


# -- bounded: whatever the input, only ValueError, and quickly -------------------------------------------

PARSERS = (parse_duration, parse_memory, parse_cpu)
number_texts = st.builds(
    lambda sign, digits, frac, exp, unit: f"{sign}{digits}{frac}{exp}{unit}",
    st.sampled_from(["", "+", "-"]),
    st.text("0123456789", min_size=0, max_size=40),
    st.sampled_from(["", ".", ".5", ".000001"]),
    st.one_of(st.just(""), st.integers(-10**9, 10**9).map(lambda e: f"e{e}")),
    st.sampled_from(["", "s", "ms", "m", "h", "ns", "Ki", "Mi", "Ei", "E", "k", "1m30s", "x"]),
)
anything = st.one_of(
    st.text(max_size=60),
    number_texts,
    st.integers(),
    st.integers(min_value=2**64, max_value=10**400),
    st.floats(),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=500)
@given(anything)
def test_parsers_raise_only_value_error(value: object) -> None:
    for parse in PARSERS:
        try:
            result = parse(value)  # type: ignore[arg-type]
        except ValueError:
            continue
        assert isinstance(result, (int, float)) and math.isfinite(result) and result >= 0


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_duration, "1e9999999s"),
        (parse_duration, "1e9999999"),
        (parse_duration, "9" * 5000 + "s"),
        (parse_duration, "1e300"),
        (parse_duration, "9999h"),
        (parse_memory, "1e9999999Ki"),
        (parse_memory, "18446744073709551616"),
        (parse_cpu, "1e9999999"),
        (parse_cpu, "1000001"),
    ],
)
def test_huge_numbers_are_validation_errors(parse: object, text: str) -> None:
    with pytest.raises(ValueError):
        parse(text)  # type: ignore[operator]


def test_huge_python_numbers_are_validation_errors() -> None:
    for parse in PARSERS:
        for value in (10**5000, float("inf"), float("nan"), -(10**40), 1e308):
            with pytest.raises(ValueError):
                parse(value)


def test_limits_are_inclusive() -> None:
    assert parse_duration("8760h") == MAX_DURATION
    assert parse_cpu(MAX_CPU) == MAX_CPU
    assert parse_memory(2**63 - 1) == 2**63 - 1
