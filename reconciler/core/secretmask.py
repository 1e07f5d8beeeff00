"""Secret values masked for display: ``diff`` (the daemon) and ``describe`` (the CLI) share it.

A Secret's ``data``/``stringData`` values may come from a SOPS file decrypted in memory;
output of ``diff`` and ``describe`` ends up in terminals, CI logs and tickets. The masking
is kubectl's (``kubectl diff`` masks Secret data the same way): keys stay, each value
becomes ``***``, and when a key's value differs between the two sides the sides read
``*** (before)`` and ``*** (after)``, so a diff still says *that* a value changed, never
what it was or became. Other kinds from a SOPS file get the same masking on exactly the
fields the file encrypted (``mask_paths_pair``).
"""
from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

MASK = "***"
SECRET_FIELDS = ("data", "stringData")


def mask_secret_pair(before: dict[str, Any] | None, after: dict[str, Any] | None
                     ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Copies of two versions of one object with Secret values masked; other kinds are returned as they are."""
    if not _is_secret(before) and not _is_secret(after):
        return before, after
    old, new = _copy(before), _copy(after)
    for field in SECRET_FIELDS:
        old_values = old.get(field) if old is not None else None
        new_values = new.get(field) if new is not None else None
        old_values = old_values if isinstance(old_values, dict) else {}
        new_values = new_values if isinstance(new_values, dict) else {}
        for key in set(old_values) | set(new_values):
            changed = key in old_values and key in new_values and old_values[key] != new_values[key]
            if key in old_values:
                old_values[key] = f"{MASK} (before)" if changed else MASK
            if key in new_values:
                new_values[key] = f"{MASK} (after)" if changed else MASK
    return old, new


def mask_paths_pair(before: dict[str, Any] | None, after: dict[str, Any] | None,
                    paths: Iterable[tuple[str | int, ...]]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Copies of two versions of one object with the values at ``paths`` (field paths, list
    indexes included: the fields a SOPS file encrypted) masked the same way."""
    old, new = copy.deepcopy(before), copy.deepcopy(after)
    for path in paths:
        if not path:
            continue
        old_parent, new_parent = _parent(old, path), _parent(new, path)
        last = path[-1]
        has_old, has_new = _has(old_parent, last), _has(new_parent, last)
        changed = has_old and has_new and old_parent[last] != new_parent[last]
        if has_old:
            old_parent[last] = f"{MASK} (before)" if changed else MASK
        if has_new:
            new_parent[last] = f"{MASK} (after)" if changed else MASK
    return old, new


def _parent(body: Any, path: tuple[str | int, ...]) -> Any:
    node = body
    for step in path[:-1]:
        if not _has(node, step):
            return None
        node = node[step]
    return node


def _has(node: Any, step: str | int) -> bool:
    if isinstance(node, dict):
        return step in node
    return isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)


def mask_secret(body: dict[str, Any]) -> dict[str, Any]:
    """A copy of one object with its Secret values masked (other kinds unchanged)."""
    masked, _ = mask_secret_pair(body, None)
    assert masked is not None
    return masked


def _is_secret(body: dict[str, Any] | None) -> bool:
    return isinstance(body, dict) and body.get("kind") == "Secret"


def _copy(body: dict[str, Any] | None) -> dict[str, Any] | None:
    """A copy deep enough that masking never touches the caller's (or the store's) object."""
    if body is None:
        return None
    copy = dict(body)
    for field in SECRET_FIELDS:
        if isinstance(copy.get(field), dict):
            copy[field] = dict(copy[field])
    return copy
