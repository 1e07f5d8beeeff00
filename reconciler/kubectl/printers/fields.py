"""How single values print: placeholders, ages and timestamps, numbers, selectors, labels.

Why it looks like this: API documents come from the daemon as plain JSON, where any
field may be missing, null or (in a hand-written manifest) a string where a number is
expected. These helpers read a field defensively and print it the way kubectl does
(`<none>`, `3m20s`, `app=web,tier in (a,b)`), so the tables and descriptions built on
them never need their own None checks and never disagree on a format.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.core.clock import from_rfc3339

NONE = "<none>"
Obj = Mapping[str, Any]  # an API document as the daemon serves it; printers only read it


# --------------------------------------------------------------------------- time


def human_duration(seconds: float) -> str:
    """kubectl's age format: 45s, 3m20s, 15m, 5h10m, 20h, 3d4h, 100d, 2y30d, 9y."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rem = s % 60
        return f"{minutes}m" if rem == 0 else f"{minutes}m{rem}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rem = minutes % 60
        return f"{hours}h" if rem == 0 else f"{hours}h{rem}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rem = hours % 24
        return f"{hours // 24}d" if rem == 0 else f"{hours // 24}d{rem}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None, *, now: float) -> str:
    ts = from_rfc3339(timestamp)
    if ts is None:
        return "<unknown>"
    return human_duration(now - ts)


def long_time(timestamp: str | None) -> str:
    """describe's timestamps: RFC 1123 with numeric zone, local time, as kubectl prints them."""
    ts = from_rfc3339(timestamp)
    if ts is None:
        return NONE
    return time.strftime("%a, %d %b %Y %H:%M:%S %z", time.localtime(ts))


# --------------------------------------------------------------------------- fields and selectors


def meta_of(obj: Obj) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def spec_of(obj: Obj) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def status_of(obj: Obj) -> Mapping[str, Any]:
    return obj.get("status") or {}


def as_int(value: object, default: int = 0) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


def format_selector(selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector as kubectl prints it: `app=web,tier in (a,b),!legacy`."""
    if not selector:
        return NONE
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(sorted(values))})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(sorted(values))})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or NONE


def format_map_selector(selector: Mapping[str, Any] | None) -> str:
    if not selector:
        return NONE
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def format_labels(labels: Mapping[str, Any] | None) -> str:
    return format_map_selector(labels)


def ports_of(containers: Iterable[Mapping[str, Any]]) -> list[str]:
    return [
        f"{p.get('containerPort')}/{p.get('protocol') or 'TCP'}"
        for c in containers
        for p in c.get("ports") or []
    ]
