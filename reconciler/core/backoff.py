"""Kubernetes' crash-loop back-off: 10 s, doubling to 5 min, forgotten after 10 min of running.

The kubelet uses one back-off rule for every retry that will most likely fail the
same way again: a container that keeps exiting (CrashLoopBackOff), an image that
cannot be pulled (ImagePullBackOff), a start the engine refuses (RunContainerError).
The node agent keeps one ``Backoff`` per such thing; this module is the rule once,
so the three cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass

BACKOFF_START = 10.0
BACKOFF_MAX = 300.0
BACKOFF_RESET_AFTER = 600.0  # a container that ran this long forgets its back-off


@dataclass
class Backoff:
    """The back-off of one thing being retried: how long the last wait was, and until when."""
    delay: float = 0.0
    until: float = 0.0
    message: str = ""  # why, where a status shows it (RunContainerError's message)

    def step(self, now: float, *, message: str | None = None) -> float:
        """Another failure at ``now``: double the wait (from 10 s, at most 5 min); the new wait."""
        self.delay = min(max(self.delay * 2, BACKOFF_START), BACKOFF_MAX)
        self.until = now + self.delay
        if message is not None:
            self.message = message
        return self.delay

    def remaining(self, now: float) -> float:
        """Seconds until the next attempt is allowed (0.0 when it is)."""
        return max(self.until - now, 0.0)

    def waiting(self, now: float) -> bool:
        return self.until > now
