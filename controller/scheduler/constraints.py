"""Placement constraints: `node.name == n1`, `node.labels.zone != b` (`=` is accepted for `==`).

A label constraint on a node that lacks the label: `==` never matches, `!=` always does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .model import LABEL_PREFIX, SPREAD_NODE_NAME, NodeView

_SYNTAX = re.compile(
    r"""^\s*(?P<attr>[A-Za-z0-9_.\-/]+)\s*(?P<op>==|!=|=)\s*(?P<value>.*?)\s*$""",
)
_LABEL_KEY = re.compile(r"^[A-Za-z0-9_.\-/]+$")


@dataclass(frozen=True)
class Constraint:
    """One parsed constraint. `label` is None for `node.name`, else the label key."""

    label: str | None
    equal: bool
    value: str

    @property
    def on_name(self) -> bool:
        return self.label is None

    @property
    def attribute(self) -> str:
        return SPREAD_NODE_NAME if self.label is None else LABEL_PREFIX + self.label

    @property
    def text(self) -> str:
        """The normalised form, e.g. "node.labels.zone == a"."""
        return f"{self.attribute} {'==' if self.equal else '!='} {self.value}"

    def matches_value(self, actual: str | None) -> bool:
        """Does a node whose attribute is `actual` (None: label missing) satisfy this?"""
        return (actual == self.value) is self.equal

    def matches(self, node: NodeView) -> bool:
        if self.label is None:
            return self.matches_value(node.name)
        return self.matches_value(node.labels.get(self.label))

    def __str__(self) -> str:
        return self.text


def parse_constraint(text: str) -> Constraint:
    """Parse one constraint; raise ValueError("constraint '<text>': ...") on bad syntax."""
    m = _SYNTAX.match(text)
    if m is None:
        raise ValueError(f"constraint {text!r}: expected '<attribute> ==|!= <value>'")
    attr, op, value = m.group("attr"), m.group("op"), m.group("value")
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    if not value:
        raise ValueError(f"constraint {text!r}: missing value")
    if any(ch in value for ch in "=!") or any(ch.isspace() for ch in value):
        raise ValueError(f"constraint {text!r}: bad value {value!r}")
    if attr == SPREAD_NODE_NAME:
        label: str | None = None
    elif attr.startswith(LABEL_PREFIX):
        label = attr[len(LABEL_PREFIX) :]
        if not _LABEL_KEY.match(label):
            raise ValueError(f"constraint {text!r}: bad label key {label!r}")
    else:
        raise ValueError(f"constraint {text!r}: unknown attribute {attr!r} (use node.name or node.labels.<key>)")
    return Constraint(label=label, equal=(op != "!="), value=value)


def parse_constraints(texts: tuple[str, ...] | list[str]) -> tuple[Constraint, ...]:
    return tuple(parse_constraint(t) for t in texts)
