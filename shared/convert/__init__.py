"""Foreign manifests (Kubernetes Deployment + Service, Docker Compose) turned into native drover ones.

``to_native`` takes the loaded documents of every file given to one command and returns the native
documents in order, each with where it came from (``FILE[doc N]``), plus the problems of every foreign
field that cannot be honoured, in the native format (``FILE[doc N] path: message``). Native documents
pass through untouched, so the native validator still checks everything that comes out.
"""

from __future__ import annotations

from typing import Any

from drover.shared.convert import compose, kubernetes
from drover.shared.convert.fields import Problem

__all__ = ["Loaded", "is_foreign", "to_native"]

#: one file: its display name and its ``(doc number, data)`` documents
Loaded = tuple[str, list[tuple[int, Any]]]


def is_foreign(doc: Any) -> bool:
    return kubernetes.is_deployment(doc) or kubernetes.is_service(doc) or compose.is_compose(doc)


def _prefixed(where: str, found: list[Problem]) -> list[Problem]:
    return [(f"{where} {path}" if path else where, message) for path, message in found]


def to_native(files: list[Loaded]) -> tuple[list[tuple[str, Any]], list[Problem]]:
    """Native documents ``(where, doc)`` for every document of ``files``, and every conversion problem."""
    out: list[tuple[str, Any]] = []
    problems: list[Problem] = []
    deployments: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, int]]] = []
    services: list[tuple[str, Any]] = []
    bad: set[str] = set()
    for name, documents in files:
        for number, doc in documents:
            where = f"{name}[doc {number}]"
            found: list[Problem] = []
            if kubernetes.is_deployment(doc):
                manifest, labels, named = kubernetes.convert_deployment(doc, found)
                deployments.append((where, manifest, labels, named))
                out.append((where, manifest))
            elif kubernetes.is_service(doc):
                services.append((where, doc))
            elif compose.is_compose(doc):
                out.extend((where, m) for m in compose.convert_file(doc, found))
            else:
                out.append((where, doc))
            problems.extend(_prefixed(where, found))
            if found:
                bad.add(where)
    for where, doc in services:
        selector = kubernetes.service_selector(doc)
        chosen = [d for d in deployments if selector and all(d[2].get(k) == v for k, v in selector.items())]
        found = []
        if len(chosen) != 1:
            what = "no Deployment" if not chosen else f"{len(chosen)} Deployments"
            found.append(("spec.selector", f"selects {what} among the files given (it must select exactly one)"))
        else:
            _, manifest, _, named = chosen[0]
            kubernetes.apply_service(doc, manifest, named, found)
        problems.extend(_prefixed(where, found))
    # A document with conversion problems is not validated again as native: that would only repeat them.
    return [(w, d) for w, d in out if w not in bad], problems
