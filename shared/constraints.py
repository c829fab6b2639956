"""The one placement grammar: constraints (``node.labels.zone == a``) and spread keys (``node.labels.zone``).

Manifest validation and the scheduler both parse with this module, so whatever ``apply`` accepts the
scheduler can evaluate. The grammar::

    constraint := ws* attribute ws* op ws* value ws*
    attribute  := "node.name" | "node.labels." key
    key        := [A-Za-z0-9] [-A-Za-z0-9_./]*            (at most 253 characters)
    op         := "==" | "!=" | "="                        ("=" means "==")
    value      := bare | '"' chars '"' | "'" chars "'"
    bare       := one or more characters other than whitespace, quotes, "=" and "!"
    chars      := one or more printable characters other than the enclosing quote

A label constraint on a node that lacks the label: ``==`` never matches, ``!=`` always does.

Parsing is a single left-to-right scan without regular expressions (so no backtracking: linear in the
length of the text), and the text is bounded by ``MAX_CONSTRAINT_LENGTH`` before anything else is done.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "LABEL_PREFIX",
    "MAX_CONSTRAINT_LENGTH",
    "MAX_LABEL_KEY_LENGTH",
    "NODE_NAME",
    "Constraint",
    "ConstraintError",
    "parse_constraint",
    "parse_constraints",
    "parse_spread",
    "pin_to",
    "spread_label",
]

NODE_NAME = "node.name"
LABEL_PREFIX = "node.labels."
MAX_CONSTRAINT_LENGTH = 1024
MAX_LABEL_KEY_LENGTH = 253

_KEY_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_KEY_REST = _KEY_FIRST | frozenset("-_./")
_QUOTES = "\"'"
_NOT_BARE = frozenset("\"'=!")
SYNTAX_HINT = "must be like 'node.labels.<key> == value' or 'node.name != value'"


class ConstraintError(ValueError):
    """A constraint or spread key that does not follow the grammar; the message is shown as is."""


@dataclass(frozen=True)
class Constraint:
    """One parsed constraint. ``label`` is None for ``node.name``, else the label key."""

    label: str | None
    equal: bool
    value: str

    @property
    def on_name(self) -> bool:
        return self.label is None

    @property
    def attribute(self) -> str:
        return NODE_NAME if self.label is None else LABEL_PREFIX + self.label

    @property
    def op(self) -> str:
        return "==" if self.equal else "!="

    @property
    def text(self) -> str:
        """The normalised form (``node.labels.zone == a``); it parses back to an equal constraint."""
        return f"{self.attribute} {self.op} {_quote(self.value)}"

    def matches_value(self, actual: str | None) -> bool:
        """Does a node whose attribute is ``actual`` (None: label missing) satisfy this?"""
        return (actual == self.value) is self.equal

    def matches(self, node_name: str, labels: Mapping[str, str]) -> bool:
        if self.label is None:
            return self.matches_value(node_name)
        return self.matches_value(labels.get(self.label))

    def __str__(self) -> str:
        return self.text


def _quote(value: str) -> str:
    if all(not ch.isspace() and ch not in _NOT_BARE for ch in value):
        return value
    quote = "'" if '"' in value else '"'
    return f"{quote}{value}{quote}"


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _key_error(key: str) -> str | None:
    """Why ``key`` is not a label key, or None."""
    if not key:
        return "missing label key after node.labels."
    if len(key) > MAX_LABEL_KEY_LENGTH:
        return f"label key longer than {MAX_LABEL_KEY_LENGTH} characters"
    if key[0] not in _KEY_FIRST or any(ch not in _KEY_REST for ch in key):
        return f"bad label key {_short(key)!r} (letters, digits, '-', '_', '.' and '/')"
    return None


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _attribute(text: str, i: int) -> tuple[str | None, int]:
    """Scan the attribute starting at ``i``: (label key or None for node.name, index after it)."""
    j = i
    while j < len(text) and (text[j] in _KEY_REST):
        j += 1
    word = text[i:j]
    if word == NODE_NAME:
        return None, j
    if word.startswith(LABEL_PREFIX):
        key = word[len(LABEL_PREFIX) :]
        problem = _key_error(key)
        if problem:
            raise ConstraintError(f"{SYNTAX_HINT}: {problem}")
        return key, j
    shown = f"unknown attribute {_short(word)!r}" if word else "missing attribute"
    raise ConstraintError(f"{SYNTAX_HINT}: {shown} (use node.name or node.labels.<key>)")


def _value(text: str, i: int) -> tuple[str, int]:
    """Scan the value starting at ``i`` (bare or quoted): (value, index after it)."""
    if i >= len(text):
        raise ConstraintError(f"{SYNTAX_HINT}: missing value")
    first = text[i]
    if first in _QUOTES:
        end = text.find(first, i + 1)
        if end < 0:
            raise ConstraintError(f"{SYNTAX_HINT}: unterminated quoted value")
        value = text[i + 1 : end]
        if not value:
            raise ConstraintError(f"{SYNTAX_HINT}: missing value")
        if not value.isprintable():
            raise ConstraintError(f"{SYNTAX_HINT}: value holds control characters")
        return value, end + 1
    j = i
    while j < len(text) and not text[j].isspace() and text[j] not in _NOT_BARE:
        j += 1
    if j == i:
        raise ConstraintError(f"{SYNTAX_HINT}: missing value")
    return text[i:j], j


def parse_constraint(text: str, *, max_length: int | None = MAX_CONSTRAINT_LENGTH) -> Constraint:
    """``"node.labels.zone == a"`` → ``Constraint("zone", True, "a")``; ``ConstraintError`` if bad.

    ``max_length=None`` lifts the length bound (tests use it to show the scan is linear)."""
    if not isinstance(text, str):
        raise ConstraintError(SYNTAX_HINT)
    if max_length is not None and len(text) > max_length:
        raise ConstraintError(f"must be at most {max_length} characters")
    i = _skip_space(text, 0)
    label, i = _attribute(text, i)
    i = _skip_space(text, i)
    if text.startswith("==", i) or text.startswith("!=", i):
        equal, i = text[i] == "=", i + 2
    elif text.startswith("=", i):
        equal, i = True, i + 1
    else:
        attribute = NODE_NAME if label is None else LABEL_PREFIX + label
        raise ConstraintError(f"{SYNTAX_HINT}: expected == or != after {_short(attribute)}")
    i = _skip_space(text, i)
    if i < len(text) and text[i] in "=!":
        raise ConstraintError(f"{SYNTAX_HINT}: unknown operator")
    value, i = _value(text, i)
    if _skip_space(text, i) < len(text):
        if text[i - 1] in _QUOTES:
            detail = "extra text after the quoted value"
        elif text[i].isspace():
            detail = 'a value with spaces must be quoted, e.g. "a b"'
        else:
            detail = f"{text[i]!r} in a value must be quoted"
        raise ConstraintError(f"{SYNTAX_HINT}: {detail}")
    return Constraint(label=label, equal=equal, value=value)


def pin_to(node: str) -> str:
    """The constraint text ``node.name == <node>``, quoted when the name needs it."""
    return Constraint(label=None, equal=True, value=node).text


def parse_constraints(texts: tuple[str, ...] | list[str]) -> tuple[Constraint, ...]:
    return tuple(parse_constraint(t) for t in texts)


def parse_spread(text: str) -> str:
    """``" node.labels.zone "`` → ``"node.labels.zone"``; ``node.name`` or ``node.labels.<key>`` only."""
    hint = "must be node.name or node.labels.<key>"
    if not isinstance(text, str) or len(text) > MAX_CONSTRAINT_LENGTH:
        raise ConstraintError(hint)
    word = text.strip()
    if word == NODE_NAME:
        return word
    if not word.startswith(LABEL_PREFIX) or _key_error(word[len(LABEL_PREFIX) :]):
        raise ConstraintError(hint)
    return word


def spread_label(spread: str) -> str | None:
    """The label key of a parsed spread key (None for ``node.name``)."""
    return None if spread == NODE_NAME else spread[len(LABEL_PREFIX) :]
