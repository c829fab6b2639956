"""Units used in manifests: durations, memory sizes and CPU amounts.

Parsers turn what a user writes into plain numbers (float seconds, int bytes, float cores) and raise
``ValueError`` with a short message meant to be shown as is. Formatters turn numbers back into the
shortest natural spelling; ``parse_x(format_x(v)) == v`` holds for every valid value.

- durations: ``500ms``, ``2s``, ``1m``, ``1h``, ``1m30s``, ``1.5s``; a plain number is seconds.
- memory (Kubernetes quantity rules): a plain number is bytes; binary suffixes ``Ki Mi Gi Ti Pi Ei``;
  decimal suffixes ``k M G T P E``; an exponent like ``129e6``. Fractional bytes round up.
- cpu: ``0.25``, ``1``, ``2.5`` cores or millicores ``250m``.

Every parser is bounded: the text is at most ``_MAX_TEXT`` characters, exponents are checked before any
arithmetic (``1e9999999s`` is an error, not a Decimal overflow or a huge computation), and the results
are at most ``MAX_DURATION`` seconds, 2**63-1 bytes and ``MAX_CPU`` cores. Whatever the input, the only
exception is ``ValueError``.
"""

from __future__ import annotations

import decimal
import math
import re
from collections.abc import Callable
from decimal import Decimal
from functools import wraps
from typing import TypeVar

from drover.shared.limits import MAX_CPU, MAX_DURATION

__all__ = [
    "CPU_HINT",
    "DURATION_HINT",
    "MEMORY_HINT",
    "format_cpu",
    "format_duration",
    "format_memory",
    "parse_cpu",
    "parse_duration",
    "parse_memory",
]

DURATION_HINT = "must be a duration like 500ms, 2s or 1m"
MEMORY_HINT = "must be a memory size like 64Mi, 1Gi or a number of bytes"
CPU_HINT = "must be a CPU amount like 0.25, 1 or 250m"

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_DURATION_UNITS: dict[str, Decimal] = {
    "h": Decimal(3600),
    "m": Decimal(60),
    "s": Decimal(1),
    "ms": Decimal("0.001"),
    "us": Decimal("0.000001"),
    "µs": Decimal("0.000001"),
    "ns": Decimal("0.000000001"),
}
_DURATION_PART = re.compile(rf"({_NUMBER})(ms|us|µs|ns|h|m|s)")
_DURATION_FULL = re.compile(rf"(?:{_NUMBER}(?:ms|us|µs|ns|h|m|s))+")
_PLAIN_NUMBER = re.compile(rf"[+]?{_NUMBER}")

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"k": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
_MEMORY = re.compile(rf"({_NUMBER})(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")
_CPU = re.compile(rf"({_NUMBER})(m?)")

# Enough digits that sums of exactly written decimals never round; every trap on, and the callers turn
# a trapped signal into ValueError.
_CTX = decimal.Context(prec=80)
#: the longest text a unit may be written as (a long one is a mistake or an attack, never a quantity)
_MAX_TEXT = 100
#: numbers whose decimal exponent is beyond this are out of every range (2**63 < 10**19)
_MAX_EXPONENT = 30

_R = TypeVar("_R")


def _bounded(hint: str) -> Callable[[Callable[[str | int | float], _R]], Callable[[str | int | float], _R]]:
    """Make a parser raise only ``ValueError(hint)`` for arithmetic trouble (Decimal signals, overflow)."""

    def wrap(parse: Callable[[str | int | float], _R]) -> Callable[[str | int | float], _R]:
        @wraps(parse)
        def checked(value: str | int | float) -> _R:
            try:
                return parse(value)
            except ValueError:
                raise
            except (ArithmeticError, TypeError) as exc:  # decimal.DecimalException is an ArithmeticError
                raise ValueError(hint) from exc

        return checked

    return wrap


def _number(text: str) -> Decimal:
    """A Decimal from an already-matched number, refused when its magnitude is absurd."""
    number = Decimal(text)
    if number and number.adjusted() > _MAX_EXPONENT:
        raise ValueError("is too large")
    if number and number.adjusted() < -400:
        return Decimal(0)  # below the smallest float: it would read as 0 anyway
    return number


def _text(value: str, hint: str) -> str:
    if len(value) > _MAX_TEXT:
        raise ValueError(hint)
    return value.strip()


def _reject_bool(value: object, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(hint)


def _finite_decimal(value: float | int, hint: str) -> Decimal:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(hint)
    if isinstance(value, int) and abs(value) > 10**_MAX_EXPONENT:
        raise ValueError("is too large")
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


# -- durations -------------------------------------------------------------------------------------------


@_bounded(DURATION_HINT)
def parse_duration(value: str | int | float) -> float:
    """``"1m30s"`` → ``90.0``; plain numbers (and numeric strings) are seconds. Never negative."""
    _reject_bool(value, DURATION_HINT)
    if isinstance(value, (int, float)):
        total = _finite_decimal(value, DURATION_HINT)
    else:
        text = _text(value, DURATION_HINT)
        if _PLAIN_NUMBER.fullmatch(text):
            total = _number(text.removeprefix("+"))
        elif text.startswith("-") and (
            _PLAIN_NUMBER.fullmatch(text[1:]) or _DURATION_FULL.fullmatch(text[1:])
        ):
            raise ValueError("must not be negative")
        elif _DURATION_FULL.fullmatch(text):
            total = Decimal(0)
            for number, unit in _DURATION_PART.findall(text):
                total = _CTX.add(total, _CTX.multiply(_number(number), _DURATION_UNITS[unit]))
        else:
            raise ValueError(DURATION_HINT)
    if total < 0:
        raise ValueError("must not be negative")
    if total > Decimal(MAX_DURATION):
        raise ValueError(f"must be at most {format_duration(MAX_DURATION)}")
    return float(total)


def format_duration(seconds: float) -> str:
    """``90.0`` → ``"1m30s"``, ``0.5`` → ``"500ms"``, ``2.0`` → ``"2s"``, ``3600`` → ``"1h"``."""
    if isinstance(seconds, bool) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format {seconds!r} as a duration")
    exact = _finite_decimal(seconds, DURATION_HINT)
    millis = _CTX.multiply(exact, Decimal(1000))
    if millis == 0:
        return "0s"
    if exact < 1:
        if millis >= Decimal("0.001"):
            return f"{format(_CTX.normalize(millis), 'f')}ms"
        return f"{float(seconds)!r}s"
    if millis != millis.to_integral_value():
        return f"{float(seconds)!r}s"
    hours, rest = _CTX.divmod(exact, Decimal(3600))
    minutes, secs = _CTX.divmod(rest, Decimal(60))
    out = ""
    if hours:
        out += f"{int(hours)}h"
    if minutes:
        out += f"{int(minutes)}m"
    if secs:
        text = format(_CTX.normalize(secs), "f")
        out += f"{text}s"
    return out


# -- memory ----------------------------------------------------------------------------------------------


@_bounded(MEMORY_HINT)
def parse_memory(value: str | int | float) -> int:
    """``"64Mi"`` → ``67108864``; ``"1G"`` → ``10**9``; a plain number is bytes (fractions round up)."""
    _reject_bool(value, MEMORY_HINT)
    if isinstance(value, (int, float)):
        amount = _finite_decimal(value, MEMORY_HINT)
    else:
        text = _text(value, MEMORY_HINT)
        match = _MEMORY.fullmatch(text.removeprefix("+"))
        if match is None:
            if text.startswith("-") and _MEMORY.fullmatch(text[1:]):
                raise ValueError("must not be negative")
            raise ValueError(MEMORY_HINT)
        number, suffix = match.groups()
        amount = _number(number)
        if suffix in _BINARY:
            amount = _CTX.multiply(amount, Decimal(1024) ** _BINARY[suffix])
        elif suffix in _DECIMAL:
            amount = _CTX.multiply(amount, Decimal(1000) ** _DECIMAL[suffix])
    if amount < 0:
        raise ValueError("must not be negative")
    if amount > Decimal(2**63 - 1):
        raise ValueError("is too large")
    return int(amount.to_integral_value(rounding=decimal.ROUND_CEILING))


def format_memory(nbytes: int) -> str:
    """``67108864`` → ``"64Mi"``; ``10**9`` → ``"1G"``; otherwise plain bytes (``"1500"``)."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
        raise ValueError(f"cannot format {nbytes!r} as a memory size")
    if nbytes == 0:
        return "0"
    for suffix, power in sorted(_BINARY.items(), key=lambda kv: -kv[1]):
        unit = 1024**power
        if nbytes % unit == 0:
            return f"{nbytes // unit}{suffix}"
    for suffix, power in sorted(_DECIMAL.items(), key=lambda kv: -kv[1]):
        unit = 1000**power
        if nbytes % unit == 0:
            return f"{nbytes // unit}{suffix}"
    return str(nbytes)


# -- cpu -------------------------------------------------------------------------------------------------


@_bounded(CPU_HINT)
def parse_cpu(value: str | int | float) -> float:
    """``"250m"`` → ``0.25``; ``"1"`` → ``1.0``; ``0.5`` → ``0.5`` (cores)."""
    _reject_bool(value, CPU_HINT)
    if isinstance(value, (int, float)):
        cores = _finite_decimal(value, CPU_HINT)
    else:
        text = _text(value, CPU_HINT)
        match = _CPU.fullmatch(text.removeprefix("+"))
        if match is None:
            if text.startswith("-") and _CPU.fullmatch(text[1:]):
                raise ValueError("must not be negative")
            raise ValueError(CPU_HINT)
        number, milli = match.groups()
        cores = _number(number)
        if milli:
            cores = _CTX.divide(cores, Decimal(1000))
    if cores < 0:
        raise ValueError("must not be negative")
    if cores > Decimal(MAX_CPU):
        raise ValueError(f"must be at most {format_cpu(MAX_CPU)}")
    return float(cores)


def format_cpu(cores: float) -> str:
    """``0.25`` → ``"250m"``; ``2.0`` → ``"2"``; ``1.5`` → ``"1.5"``; other fractions as plain numbers."""
    if isinstance(cores, bool) or not math.isfinite(cores) or cores < 0:
        raise ValueError(f"cannot format {cores!r} as a CPU amount")
    exact = _finite_decimal(cores, CPU_HINT)
    if exact == exact.to_integral_value():
        return str(int(exact))
    millis = _CTX.multiply(exact, Decimal(1000))
    if exact < 1 and millis == millis.to_integral_value():
        return f"{int(millis)}m"
    return repr(float(cores))
