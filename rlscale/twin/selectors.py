"""Kubernetes label and field selectors, as the API server reads them from ``?labelSelector=``
and ``?fieldSelector=``.

Label selectors (``app=vllm,tier in (a,b),!canary``): comma-separated requirements, each one of
``key``, ``!key``, ``key=value``, ``key==value``, ``key!=value``, ``key in (v1,v2)``,
``key notin (v1,v2)``; every requirement must hold. ``notin`` and ``!=`` also hold when the
label is absent, as in Kubernetes.

Field selectors (``status.phase!=Failed,spec.nodeName=n1``): ``path=value``, ``path==value``
or ``path!=value`` on a dotted path of the object (``metadata.name``, ``status.phase``, ...);
an absent field reads as the empty string.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    """A selector the API server would reject (the message quotes the bad part)."""


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector: ``operator`` is one of ``exists``, ``!exists``, ``=``,
    ``!=``, ``in``, ``notin``; ``values`` holds one value for ``=``/``!=``."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this requirement."""
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "exists":
            return present
        if self.operator == "!exists":
            return not present
        if self.operator in ("=", "in"):
            return present and value in self.values
        return not present or value not in self.values  # "!=" and "notin"


def _terms(text: str) -> list[str]:
    """Split on the commas that are not inside ``( )``."""
    terms, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced ')' in selector {text!r}")
        elif char == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    if depth:
        raise SelectorError(f"unbalanced '(' in selector {text!r}")
    terms.append(text[start:])
    return [t.strip() for t in terms if t.strip()]


def parse_label_selector(text: str) -> tuple[Requirement, ...]:
    """The requirements of a label selector string (empty string: no requirement)."""
    out = []
    for term in _terms(text):
        words = term.split()
        if len(words) >= 2 and words[1] in ("in", "notin"):
            rest = term[term.index(words[1]) + len(words[1]):].strip()
            if not (rest.startswith("(") and rest.endswith(")")):
                raise SelectorError(f"expected '(values)' after {words[1]!r} in {term!r}")
            values = tuple(v.strip() for v in rest[1:-1].split(",") if v.strip())
            out.append(Requirement(words[0], words[1], values))
        elif "!=" in term:
            key, value = term.split("!=", 1)
            out.append(Requirement(key.strip(), "!=", (value.strip(),)))
        elif "=" in term:
            key, value = term.split("==", 1) if "==" in term else term.split("=", 1)
            out.append(Requirement(key.strip(), "=", (value.strip(),)))
        elif term.startswith("!"):
            out.append(Requirement(term[1:].strip(), "!exists"))
        elif len(words) == 1:
            out.append(Requirement(term, "exists"))
        else:
            raise SelectorError(f"cannot parse label selector term {term!r}")
    return tuple(out)


def labels_match(labels: Mapping[str, str] | None, selector: str) -> bool:
    """Whether an object's ``labels`` satisfy the label ``selector``."""
    return all(r.matches(labels or {}) for r in parse_label_selector(selector))


def _field(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for name in path.split("."):
        value = value.get(name) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)


def fields_match(obj: Mapping[str, Any], selector: str) -> bool:
    """Whether the object satisfies the field ``selector``."""
    for term in _terms(selector):
        if "!=" in term:
            path, value = term.split("!=", 1)
            if _field(obj, path.strip()) == value.strip():
                return False
        elif "=" in term:
            path, value = term.split("==", 1) if "==" in term else term.split("=", 1)
            if _field(obj, path.strip()) != value.strip():
                return False
        else:
            raise SelectorError(f"cannot parse field selector term {term!r}")
    return True
