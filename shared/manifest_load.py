"""Reading manifest text into plain data, bounded: size, nesting and alias expansion are checked first.

YAML can make a small text expensive: 2000 nested ``[`` exhaust Python's recursion while composing,
and aliases (``&a``/``*a``, the "billion laughs") make a few hundred bytes stand for gigabytes once
expanded. So before anything is built, one pass over the parser's events (an iterative state machine,
libyaml when available) checks ``MAX_NESTING`` and counts the values (``MAX_YAML_NODES``) and characters
(2 MiB) the text stands for with every alias expanded, in linear time: an anchor's size is known when it
closes. Only
then are the documents composed and constructed; any failure is one ``ManifestError`` problem.

``check_data`` applies the same bounds to data that did not come from YAML (a request on the bus).
"""

from __future__ import annotations

from typing import Any

import yaml

from drover.shared.limits import MAX_MANIFEST_BYTES, MAX_NESTING, MAX_YAML_NODES
from drover.shared.manifest_errors import ManifestError, display_name

__all__ = ["TOO_LARGE", "check_data", "check_size", "load_documents"]

TOO_LARGE = f"is larger than 1 MiB (the limit is {MAX_MANIFEST_BYTES:,} bytes)"

# libyaml's parser is much faster than the pure-Python one; both give the same events and nodes.
_Base: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc]
    """SafeLoader that rejects duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: Any, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, (str, int, float, bool)):
            continue
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    result: dict[Any, Any] = loader.construct_mapping(node, deep=deep)
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _Bounds(Exception):
    def __init__(self, message: str, mark: Any = None):
        super().__init__(message)
        self.message = message
        self.mark = mark


def _at(mark: Any) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _check_events(text: str) -> None:
    """Raise ``_Bounds`` when the text nests deeper than ``MAX_NESTING`` or expands past ``MAX_YAML_NODES``."""
    loader = _Loader(text)
    try:
        open_nodes: list[tuple[str | None, int, int]] = []  # (anchor, values and characters when it opened)
        sizes: dict[str, tuple[int, int]] = {}  # anchor → expanded (values, characters) of what it names
        count = chars = 0
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                count += 1
                chars += 1
                open_nodes.append((event.anchor, count, chars))
                if len(open_nodes) > MAX_NESTING:
                    raise _Bounds(f"nested more than {MAX_NESTING} levels deep", event.start_mark)
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                anchor, started, chars_started = open_nodes.pop()
                if anchor is not None:
                    sizes[anchor] = (count - started + 1, chars - chars_started + 1)
            elif isinstance(event, yaml.ScalarEvent):
                count += 1
                chars += len(event.value) + 1
                if event.anchor is not None:
                    sizes[event.anchor] = (1, len(event.value) + 1)
            elif isinstance(event, yaml.AliasEvent):
                if event.anchor not in sizes:
                    # undefined, or an anchor still open: a recursive structure no manifest needs
                    raise _Bounds(f"alias *{event.anchor} refers to no complete anchor", event.start_mark)
                count += sizes[event.anchor][0]
                chars += sizes[event.anchor][1]
            if chars > 2 * MAX_MANIFEST_BYTES:
                raise _Bounds("more than 2 MiB of values once aliases are expanded", event.start_mark)
            if count > MAX_YAML_NODES:
                raise _Bounds(
                    f"more than {MAX_YAML_NODES:,} values once aliases are expanded", getattr(event, "start_mark", None)
                )
    finally:
        loader.dispose()


def check_size(size: int, source: str) -> None:
    """``ManifestError`` when a source of ``size`` bytes is over ``MAX_MANIFEST_BYTES``."""
    if size > MAX_MANIFEST_BYTES:
        raise ManifestError([(display_name(source), TOO_LARGE)])


def load_documents(text: str, source: str) -> list[tuple[int, Any]]:
    """The non-empty documents of a YAML (or JSON) text as ``(doc number, data)``; numbers are 1-based.

    A file holding a single JSON/YAML list is a list of documents. Syntax errors and exceeded bounds
    raise ``ManifestError`` naming the line and column.
    """
    name = display_name(source)
    if len(text) > MAX_MANIFEST_BYTES:  # cheap first: characters never outnumber bytes
        check_size(len(text), source)
    check_size(len(text.encode("utf-8", "surrogatepass")), source)
    try:
        _check_events(text)
        docs = list(yaml.load_all(text, Loader=_Loader))
    except _Bounds as exc:
        raise ManifestError([(name, f"too complex{_at(exc.mark)}: {exc.message}")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "syntax error"
        raise ManifestError([(name, f"invalid YAML{_at(mark)}: {what}")]) from None
    except yaml.YAMLError as exc:
        raise ManifestError([(name, f"invalid YAML: {exc}")]) from None
    except (ValueError, ArithmeticError, RecursionError, MemoryError) as exc:
        # e.g. an integer of more than 4300 digits, or a timestamp out of range
        what = str(exc) or type(exc).__name__
        if "integer string conversion" in what:
            what = "a number has more than 4300 digits"
        raise ManifestError([(name, f"invalid YAML: {what}")]) from None
    non_empty = [d for d in docs if d is not None]
    if len(non_empty) == 1 and isinstance(non_empty[0], list):
        docs = non_empty[0]
    return [(i, doc) for i, doc in enumerate(docs, start=1) if doc is not None]


def check_data(data: Any) -> str | None:
    """Why decoded data (a request's documents) is out of bounds, or None: the YAML bounds on nesting
    and on the number of values. Iterative, so no depth can exhaust the stack."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    count = 0
    while stack:
        item, depth = stack.pop()
        count += 1
        if count > MAX_YAML_NODES:
            return f"more than {MAX_YAML_NODES:,} values"
        if isinstance(item, dict):
            children: Any = [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth >= MAX_NESTING:
            return f"nested more than {MAX_NESTING} levels deep"
        stack.extend((child, depth + 1) for child in children)
    return None
