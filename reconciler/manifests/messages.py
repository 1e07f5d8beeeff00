"""Field paths and one-sentence messages for users, from pydantic errors and our checks.

pydantic's wording ("Input should be a valid string") is written for Python callers; a
manifest author wants ``spec.replicas: must be an integer, not a string ('3')``.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def format_path(path: Iterable[Any]) -> str:
    """``('spec', 'containers', 0, 'image')`` -> ``spec.containers[0].image``.

    Keys that are not plain words (label keys, file names) are quoted in brackets, so a
    dotted key cannot be mistaken for nesting: ``metadata.labels["app.kubernetes.io/name"]``.
    """
    out = ""
    for item in path:
        if item == "[key]":
            continue
        if isinstance(item, int):
            out += f"[{item}]"
        elif isinstance(item, str) and _PLAIN_KEY.fullmatch(item):
            out += f".{item}" if out else item
        else:
            out += f"[{json.dumps(str(item)[:100])}]"
    return out


def describe_value(value: Any) -> str:
    """What the user wrote, in YAML words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _shown(value: Any) -> str:
    """The value itself, when short enough to help."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int) and abs(value) < 10**40 or isinstance(value, float):
        return f" ({value!r})"
    if isinstance(value, str) and len(value) <= 60:
        return f" ({value!r})"
    return ""


def describe_error(error: Mapping[str, Any]) -> str:
    """The message for one pydantic error (without its path)."""
    kind = error.get("type", "")
    given = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "string_type":
        hint = "; quote it in the YAML" if isinstance(given, (int, float, bool)) else ""
        return f"must be a string, not {describe_value(given)}{_shown(given)}{hint}"
    if kind == "int_type":
        return f"must be an integer, not {describe_value(given)}{_shown(given)}"
    if kind == "bool_type":
        return f"must be true or false, not {describe_value(given)}{_shown(given)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping, not {describe_value(given)}"
    if kind == "list_type":
        return f"must be a list, not {describe_value(given)}"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "")
        shown = repr(given)[:80] if isinstance(given, str) else describe_value(given)
        return f"must be one of {expected}, not {shown}"
    if kind == "greater_than_equal":
        return f"must be greater than or equal to {ctx.get('ge')}"
    if kind == "greater_than":
        return f"must be greater than {ctx.get('gt')}"
    if kind == "less_than_equal":
        return f"must be less than or equal to {ctx.get('le')}"
    if kind == "less_than":
        return f"must be less than {ctx.get('lt')}"
    if kind == "too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else f"must have at least {ctx.get('min_length')} items"
    if kind == "string_too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else f"must be at least {ctx.get('min_length')} characters"
    if kind == "extra_forbidden":
        return "unknown field"
    message = str(error.get("msg", "is invalid"))
    return message.removeprefix("Value error, ")
