"""Waiting on a condition with a deadline: the one poll loop every test shares (never a fixed sleep).

Why one: a dozen private copies had drifted apart (some swallowed errors, some did not; some
named what they waited for, some said only "timed out"). A failure now always says what was
awaited, for how long, and the last error the condition raised while it was not yet true.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], *, timeout: float = 15.0, interval: float = 0.01,
             what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy (returned), or fail after ``timeout``
    seconds. An exception from ``predicate`` counts as "not yet" (a daemon may still be starting)
    and is named in the failure."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f" (last error: {last_error!r})" if last_error else ""))
        time.sleep(interval)
