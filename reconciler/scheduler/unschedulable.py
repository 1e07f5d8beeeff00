"""The pods the scheduler could not place: kube-scheduler's unschedulable set with per-pod back-off.

Why (issue 14/16): retrying every Pending pod every few seconds, each retry writing a
FailedScheduling event, cost most of a CPU with thousands of pods that no node can run.
kube-scheduler (pkg/scheduler/internal/queue) does not poll: a pod that fails goes to an
"unschedulable" set and stays there until

  - a cluster event could make it schedulable (a Node added or changed in what placement
    reads, a bound pod gone — room freed, the pod's own spec changed): ``move_all`` marks
    every parked pod "moved"; or
  - it has been parked ``MAX_IN_UNSCHEDULABLE`` seconds (podMaxInUnschedulablePodsDuration).

Even then it is retried only once its back-off has run out: ``INITIAL_BACKOFF`` seconds
after the first failed attempt, doubling per attempt up to ``MAX_BACKOFF``
(podInitialBackoffSeconds / podMaxBackoffSeconds). So the retry rate — and the event
writes, which happen only on a retry — is bounded by the back-off whatever the events.

A move that lands while an attempt is running must not be lost (the attempt may have
listed the nodes before the change): like kube-scheduler's moveRequestCycle, each attempt
notes ``cycle()`` when it starts and ``failed`` treats the pod as moved if a move came since.

Plain data with explicit times, no store and no clock, so the rules are table-tested.
"""
from __future__ import annotations

import enum
import threading
from collections.abc import Hashable
from dataclasses import dataclass

INITIAL_BACKOFF = 1.0  # seconds; kube-scheduler's podInitialBackoffSeconds
MAX_BACKOFF = 10.0  # podMaxBackoffSeconds
MAX_IN_UNSCHEDULABLE = 300.0  # podMaxInUnschedulablePodsDuration: 5 minutes


def backoff_duration(attempts: int, *, initial: float = INITIAL_BACKOFF, maximum: float = MAX_BACKOFF) -> float:
    """The back-off after ``attempts`` failed attempts: initial, doubled per further attempt, capped."""
    duration = initial
    for _ in range(max(attempts, 1) - 1):
        duration *= 2
        if duration >= maximum:
            return maximum
    return min(duration, maximum)


class Verdict(enum.Enum):
    RETRY = "retry"  # try to place it now
    BACKING_OFF = "backing-off"  # moved (or its time is up) but its back-off runs: wait, then retry
    PARKED = "parked"  # nothing happened that could help it: no retry, no write


@dataclass
class _Entry:
    attempts: int
    failed_at: float  # when the last attempt failed
    parked_at: float  # when it last went (back) into the unschedulable set
    signature: Hashable  # what placement read of the pod itself
    message: str
    moved: bool = False


@dataclass(frozen=True, kw_only=True)
class Failure:
    """What ``failed`` decided: retry the pod after ``retry_in`` seconds at the latest
    (the back-off if it was moved meanwhile, else the 5-minute cap); ``new_message``:
    the first failure of the pod with this message (worth an info log line)."""

    retry_in: float
    new_message: bool
    attempts: int


class UnschedulablePods:
    """The parked pods by key; thread-safe (the watch thread moves, the worker decides)."""

    def __init__(self, *, initial_backoff: float = INITIAL_BACKOFF, max_backoff: float = MAX_BACKOFF,
                 max_in_unschedulable: float = MAX_IN_UNSCHEDULABLE) -> None:
        self._initial = initial_backoff
        self._max = max_backoff
        self._max_parked = max_in_unschedulable
        self._lock = threading.Lock()
        self._entries: dict[Hashable, _Entry] = {}
        self._moves = 0  # how many move_all calls so far: an attempt's "cycle"

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def cycle(self) -> int:
        """Note before an attempt reads the nodes; hand it to ``failed``."""
        with self._lock:
            return self._moves

    def verdict(self, key: Hashable, *, signature: Hashable, now: float) -> tuple[Verdict, float]:
        """Whether to try ``key`` now; with BACKING_OFF, the seconds left of its back-off."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return Verdict.RETRY, 0.0
            due = entry.moved or entry.signature != signature or now - entry.parked_at >= self._max_parked
            if not due:
                return Verdict.PARKED, 0.0
            left = entry.failed_at + backoff_duration(entry.attempts, initial=self._initial, maximum=self._max) - now
            return (Verdict.BACKING_OFF, left) if left > 0 else (Verdict.RETRY, 0.0)

    def failed(self, key: Hashable, *, signature: Hashable, message: str, now: float, cycle: int) -> Failure:
        """An attempt that started at ``cycle`` found no node: park the pod (or, if a move
        came meanwhile, keep it moved so it is retried after its back-off)."""
        with self._lock:
            entry = self._entries.get(key)
            new_message = entry is None or entry.message != message
            if entry is None:
                entry = self._entries[key] = _Entry(attempts=0, failed_at=now, parked_at=now,
                                                    signature=signature, message=message)
            entry.attempts += 1
            entry.failed_at = entry.parked_at = now
            entry.signature, entry.message = signature, message
            entry.moved = self._moves > cycle
            backoff = backoff_duration(entry.attempts, initial=self._initial, maximum=self._max)
            return Failure(retry_in=backoff if entry.moved else self._max_parked, new_message=new_message,
                           attempts=entry.attempts)

    def forget(self, key: Hashable) -> None:
        """The pod was placed, deleted or bound elsewhere."""
        with self._lock:
            self._entries.pop(key, None)

    def move_all(self) -> list[Hashable]:
        """A cluster event that could help any of them: mark every parked pod moved; returns the
        keys that were not moved yet (the others are queued or backing off already)."""
        with self._lock:
            self._moves += 1
            keys = [key for key, entry in self._entries.items() if not entry.moved]
            for key in keys:
                self._entries[key].moved = True
            return keys
