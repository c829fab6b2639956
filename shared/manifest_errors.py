"""Turning pydantic validation errors on manifests into short human problems.

A problem is a ``(path, message)`` pair such as ``("spec.ports[0].container", "must be an integer 1-65535")``.
``ManifestError`` carries the problems of every document of every file, with the path already prefixed by
``FILE[doc N]``; ``lines()`` gives the one-line-per-problem text the CLI prints.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union

from drover.shared.errors import ValidationError

if TYPE_CHECKING:  # pydantic loads with the schema (manifest.py): reading and converting YAML needs none of it
    from pydantic import BaseModel
    from pydantic import ValidationError as PydanticValidationError
    from pydantic_core import ErrorDetails

__all__ = [
    "CROSS_CHECK_ERROR",
    "ManifestError",
    "display_name",
    "format_loc",
    "in_file_order",
    "problems_from_pydantic",
]

#: error type of the custom errors that bundle the cross-field problems of a model (see ``manifest.py``);
#: their ``ctx["problems"]`` is a list of ``(relative path, message)``.
CROSS_CHECK_ERROR = "drover_cross_check"

_SIMPLE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class ManifestError(ValidationError):
    """One or more manifest problems; ``problems`` are ``("FILE[doc N] path", message)`` pairs."""

    def lines(self) -> list[str]:
        """One ``FILE[doc N] path: message`` line per problem, in file and document order."""
        return [f"{path}: {message}" if path else message for path, message in self.problems]

    def __str__(self) -> str:
        return "\n".join(self.lines())


def display_name(source: str) -> str:
    """How a source is named in problem lines: ``-`` is ``<stdin>``."""
    return "<stdin>" if source in ("-", "") else source


def in_file_order(problems: list[tuple[str, str]], names: list[str]) -> list[tuple[str, str]]:
    """``problems`` sorted by the file (in ``names`` order) and document number their path starts with."""

    def order(problem: tuple[str, str]) -> tuple[int, int]:
        path = problem[0]
        for index, name in enumerate(names):
            if path == name:
                return index, 0
            if path.startswith(f"{name}[doc "):
                number = path[len(name) + 5 :].partition("]")[0]
                return index, int(number) if number.isdigit() else 0
        return len(names), 0

    return sorted(problems, key=order)


def format_loc(loc: Sequence[int | str]) -> str:
    """``("spec", "ports", 0, "container")`` → ``spec.ports[0].container``; odd keys are quoted."""
    out = ""
    for item in loc:
        if isinstance(item, int):
            out += f"[{item}]"
        elif item == "[key]":
            continue
        elif _SIMPLE_KEY.fullmatch(item):
            out += f".{item}" if out else item
        else:
            out += f"[{item!r}]" if out else repr(item)
    return out


def _unwrap(annotation: Any, step: int | str) -> Any:
    """The annotation reached from ``annotation`` by one ``loc`` step, or None."""
    from pydantic import BaseModel

    annotation = _base(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(str(step))
        return field.annotation if field is not None else None
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is list and isinstance(step, int) and args:
        return args[0]
    if origin is dict and isinstance(step, str) and len(args) == 2:
        return args[1]
    return None


def _base(annotation: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` → ``X`` (other unions unchanged)."""
    while typing.get_origin(annotation) in (typing.Annotated, Union, types.UnionType):
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            break
        annotation = args[0]
    return annotation


def _annotation_at(root: type[BaseModel], loc: Sequence[int | str]) -> Any:
    annotation: Any = root
    for step in loc:
        annotation = _unwrap(annotation, step)
        if annotation is None:
            return None
    return _base(annotation)


def _model_at(root: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    from pydantic import BaseModel

    annotation = _annotation_at(root, loc)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _unknown_field(root: type[BaseModel], loc: Sequence[int | str]) -> str:
    model = _model_at(root, loc[:-1])
    key = str(loc[-1])
    if model is not None:
        import difflib  # only for an unknown field: `drover apply` reads manifests through this module

        close = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.6)
        if not close:
            close = [name for name in model.model_fields if name.lower() == key.lower()]
        if close:
            return f"unknown field (did you mean '{close[0]}'?)"
    return "unknown field"


def _choices(expected: str) -> str:
    options = re.findall(r"'([^']*)'", expected)
    if len(options) == 1:
        return f"must be {options[0]}"
    return "must be one of " + ", ".join(options) if options else f"must be {expected}"


def _bound(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _message(error: ErrorDetails, root: type[BaseModel]) -> str:
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    number = "an integer " if _annotation_at(root, error["loc"]) is int else ""
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return _unknown_field(root, error["loc"])
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "must be an integer"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return "must be a number"
    if kind in ("string_type", "string_unicode"):
        return "must be a string"
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false"
    if kind in ("dict_type", "model_type", "model_attributes_type", "mapping_type"):
        return "must be a mapping"
    if kind in ("list_type", "tuple_type", "iterable_type"):
        return "must be a list"
    if kind == "literal_error":
        return _choices(str(ctx.get("expected", "")))
    if kind == "string_too_short":
        return (
            "must not be empty"
            if ctx.get("min_length") == 1
            else f"must be at least {ctx['min_length']} characters"
        )
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "too_short":
        return (
            "must not be empty"
            if ctx.get("min_length") == 1
            else f"must have at least {ctx['min_length']} items"
        )
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items"
    if kind == "greater_than_equal":
        return f"must be {number}>= {_bound(ctx.get('ge'))}"
    if kind == "greater_than":
        return f"must be {number}> {_bound(ctx.get('gt'))}"
    if kind == "less_than_equal":
        return f"must be {number}<= {_bound(ctx.get('le'))}"
    if kind == "less_than":
        return f"must be {number}< {_bound(ctx.get('lt'))}"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}"
    msg = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg[:1].lower() + msg[1:] if msg[:2] != msg[:2].upper() else msg


def problems_from_pydantic(exc: PydanticValidationError, root: type[BaseModel]) -> list[tuple[str, str]]:
    """The problems of a failed ``root.model_validate`` as ``(path, message)``, paths like ``spec.image``."""
    out: list[tuple[str, str]] = []
    for error in exc.errors():
        loc = list(error["loc"])
        if error["type"] == CROSS_CHECK_ERROR:
            for rel, message in (error.get("ctx") or {}).get("problems", []):
                out.append((format_loc([*loc, *rel]), message))
            continue
        out.append((format_loc(loc), _message(error, root)))
    return out
