"""Drift corrected on the nodes, told as one ``Drift`` commit event per interval at most.

The node agents report each correction as it happens (``reconciler/kubelet/drift.py``:
``on_drift(reason)``). Told one by one, a node that loses its engine would send one
notification per pod; so the first correction after a quiet spell is told at once (someone
killed a container: say so now), and later ones are counted and told together when the
interval since the last one has passed ("3 containers restarted, 1 stray pod removed").

The event carries the last applied commit: drift is the engine moving away from what that
commit declared, and the commit is what the notification's reader knows.
"""
from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

from reconciler.core.commitevents import CommitEvent

DRIFT_INTERVAL = 60.0  # seconds between two Drift events at most


class DriftDigest:
    """An ``on_drift`` callable's target that emits rate-limited, summarised Drift events."""

    def __init__(self, *, emit: Callable[[CommitEvent], None], last_applied: Callable[[], str | None],
                 interval: float = DRIFT_INTERVAL, now: Callable[[], float] = time.monotonic) -> None:
        self._emit = emit
        self._last_applied = last_applied
        self.interval = interval
        self._now = now
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()
        self._next_allowed = float("-inf")
        self._timer: threading.Timer | None = None
        self._stopped = False

    def on_drift(self, reason: str) -> None:
        """One correction (called from a node agent's thread: only counts, or starts a timer)."""
        with self._lock:
            if self._stopped:
                return
            self._counts[reason] += 1
            if self._timer is not None:
                return  # a flush is already due; it will include this one
            wait = self._next_allowed - self._now()
            if wait > 0:
                self._timer = threading.Timer(wait, self.flush)
                self._timer.daemon = True
                self._timer.start()
                return
        self.flush()

    def flush(self) -> None:
        """Emit what was counted (if anything) now."""
        with self._lock:
            self._timer = None
            counts, self._counts = self._counts, collections.Counter()
            if not counts or self._stopped:
                return
            self._next_allowed = self._now() + self.interval
        try:
            sha = self._last_applied() or ""
        except Exception:  # a store hiccup must not lose the event; the commit is context
            sha = ""
        self._emit(CommitEvent(sha=sha, state="Drift", message=summary(counts), time=time.time()))

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


def summary(counts: collections.Counter[str]) -> str:
    """'Drift corrected: 3 × container restarted, 1 × stray pod removed.' (most frequent first)."""
    total = sum(counts.values())
    parts = ", ".join(f"{n} × {reason.replace('_', ' ')}" for reason, n in counts.most_common())
    return f"Drift corrected on the nodes ({total} correction{'s' if total != 1 else ''}): {parts}."
