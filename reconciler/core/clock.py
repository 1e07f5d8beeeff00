"""Time for the control plane: one injectable clock, and RFC 3339 conversions.

Controllers never call ``time.time()`` directly, so rollout maths that depends
on time (minReadySeconds, progressDeadlineSeconds, back-off) can be tested with
a clock the test moves by hand.
"""
from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to (tests, simulations)."""

    def __init__(self, *, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


def to_rfc3339(ts: float) -> str:
    """Kubernetes' timestamp format; fractions kept so ordering within a second survives."""
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_rfc3339(text: str | None) -> float | None:
    if not text:
        return None
    try:
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None
