"""parse_constraint and Constraint.matches."""

from __future__ import annotations

import pytest

from drover.controller.scheduler import NodeView, parse_constraint


def node(name: str = "n1", **labels: str) -> NodeView:
    return NodeView(name, labels, 4.0, 1024, 0.0, 0, True, {})


@pytest.mark.parametrize(
    ("text", "label", "equal", "value", "normal"),
    [
        ("node.name == n1", None, True, "n1", "node.name == n1"),
        ("node.name==n1", None, True, "n1", "node.name == n1"),
        ("node.name = n1", None, True, "n1", "node.name == n1"),
        ("  node.labels.zone != b ", "zone", False, "b", "node.labels.zone != b"),
        ("node.labels.zone=a", "zone", True, "a", "node.labels.zone == a"),
        (
            "node.labels.example.com/disk == 'ssd'",
            "example.com/disk",
            True,
            "ssd",
            "node.labels.example.com/disk == ssd",
        ),
    ],
)
def test_parse(text: str, label: str | None, equal: bool, value: str, normal: str) -> None:
    c = parse_constraint(text)
    assert (c.label, c.equal, c.value, c.text) == (label, equal, value, normal)
    assert c.on_name is (label is None)
    assert parse_constraint(c.text) == c


@pytest.mark.parametrize(
    "text",
    [
        "",
        "node.name",
        "node.name ==",
        "node.name == a == b",
        "node.name === a",
        "node.name < 3",
        "node.labels. == a",
        "node.labels == a",
        "engine.labels.x == a",
        "node.id == abc",
        "zone == a",
        "node.name == two words",
    ],
)
def test_bad_syntax(text: str) -> None:
    with pytest.raises(ValueError, match=r"^constraint '.*': "):
        parse_constraint(text)


def test_matches_name() -> None:
    assert parse_constraint("node.name == n1").matches(node("n1"))
    assert not parse_constraint("node.name == n1").matches(node("n2"))
    assert parse_constraint("node.name != n1").matches(node("n2"))
    assert not parse_constraint("node.name != n1").matches(node("n1"))


def test_matches_labels_and_missing_label() -> None:
    eq, ne = parse_constraint("node.labels.zone == a"), parse_constraint("node.labels.zone != a")
    assert eq.matches(node(zone="a")) and not ne.matches(node(zone="a"))
    assert not eq.matches(node(zone="b")) and ne.matches(node(zone="b"))
    # a missing label never equals, always differs
    assert not eq.matches(node()) and ne.matches(node())
