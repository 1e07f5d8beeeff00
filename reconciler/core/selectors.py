"""Label selectors: Kubernetes' matchLabels/matchExpressions and the `-l` string form.

Pure functions over plain dicts, shared by controllers (ReplicaSet ownership,
Service endpoints) and the API (`get -l`).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    """A selector that cannot be parsed or is not valid."""


@dataclass(frozen=True, kw_only=True)
class Requirement:
    key: str
    operator: str  # In | NotIn | Exists | DoesNotExist
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        raise SelectorError(f"unknown operator {self.operator!r}")


@dataclass(frozen=True, kw_only=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


def from_label_selector(selector: Mapping[str, Any] | None) -> Selector:
    """Build a Selector from a Kubernetes LabelSelector dict (matchLabels + matchExpressions)."""
    if not selector:
        return Selector()
    reqs: list[Requirement] = []
    for key, value in sorted((selector.get("matchLabels") or {}).items()):
        reqs.append(Requirement(key=key, operator="In", values=(str(value),)))
    for expr in selector.get("matchExpressions") or []:
        op = expr.get("operator")
        values = tuple(str(v) for v in (expr.get("values") or ()))
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise SelectorError(f"unknown operator {op!r}")
        if op in ("In", "NotIn") and not values:
            raise SelectorError(f"operator {op} needs values")
        reqs.append(Requirement(key=expr.get("key", ""), operator=op, values=values))
    return Selector(requirements=tuple(reqs))


def from_map(labels: Mapping[str, str] | None) -> Selector:
    """A Service-style selector: every key equals its value."""
    return from_label_selector({"matchLabels": dict(labels or {})})


_SET_RE = re.compile(r"^\s*(!?)([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts if p.strip()]


def parse(text: str) -> Selector:
    """Parse kubectl's `-l` syntax: `a=b,c!=d,e in (x,y),f notin (z),g,!h`."""
    reqs: list[Requirement] = []
    for part in _split_top_level(text or ""):
        eq = _EQ_RE.match(part)
        if eq:
            key, op, value = eq.groups()
            reqs.append(Requirement(key=key, operator="NotIn" if op == "!=" else "In", values=(value,)))
            continue
        st = _SET_RE.match(part)
        if not st:
            raise SelectorError(f"cannot parse selector {part.strip()!r}")
        bang, key, setop, values = st.groups()
        if setop:
            if bang:
                raise SelectorError(f"cannot parse selector {part.strip()!r}")
            vals = tuple(v.strip() for v in values.split(",") if v.strip())
            reqs.append(Requirement(key=key, operator="In" if setop == "in" else "NotIn", values=vals))
        else:
            reqs.append(Requirement(key=key, operator="DoesNotExist" if bang else "Exists"))
    return Selector(requirements=tuple(reqs))
