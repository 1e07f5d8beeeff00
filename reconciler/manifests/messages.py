"""Field paths and one-sentence messages for users, from pydantic errors and our checks.

pydantic's wording ("Input should be a valid string") is written for Python callers; a
manifest author wants ``spec.replicas: must be an integer, not a string ('3')``.

Quoting the value helps, except where the value is a secret: a Secret's data, or anything
decrypted from a SOPS file. Problems travel to logs, ``status`` and commit records, so for
those ``describe_error(..., show_value=False)`` never repeats the input, not even inside a
validator's own message.
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


def describe_error(error: Mapping[str, Any], *, show_value: bool = True) -> str:
    """The message for one pydantic error (without its path); with ``show_value=False`` the
    input never appears in it."""
    message = _describe(error, show_value=show_value)
    return message if show_value else _without_value(message, error.get("input"))


def _without_value(message: str, given: Any) -> str:
    """``message`` with the input taken out: a validator may have quoted it in its own words."""
    if isinstance(given, bool) or not isinstance(given, (str, int, float)):
        return message
    text = str(given)
    if not text or text not in message:
        return message
    message = message.replace(repr(given), "***")
    if text in message and len(text) >= 3:
        message = message.replace(text, "***")
    return message if text not in message else "is invalid (the value is not shown: it may be secret)"


def _describe(error: Mapping[str, Any], *, show_value: bool) -> str:
    kind = error.get("type", "")
    given = error.get("input")
    ctx = error.get("ctx") or {}
    shown = _shown(given) if show_value else ""
    if kind == "missing":
        return "is required"
    if kind == "string_type":
        hint = "; quote it in the YAML" if isinstance(given, (int, float, bool)) else ""
        return f"must be a string, not {describe_value(given)}{shown}{hint}"
    if kind == "int_type":
        return f"must be an integer, not {describe_value(given)}{shown}"
    if kind == "bool_type":
        return f"must be true or false, not {describe_value(given)}{shown}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping, not {describe_value(given)}"
    if kind == "list_type":
        return f"must be a list, not {describe_value(given)}"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "")
        value = repr(given)[:80] if isinstance(given, str) and show_value else describe_value(given)
        return f"must be one of {expected}, not {value}"
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
