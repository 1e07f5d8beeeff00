"""A deduplicating work queue of object keys, controller-runtime style.

Reconcile is level-based: an item is a key (kind, namespace, name), never an
event, so ten changes to one object while it waits are one reconcile. A key is
never processed by two workers at once; a key added while it is being
processed is processed again afterwards (the "dirty" set). Failures requeue
with per-key exponential back-off; ``Result.requeue_after`` and
``TemporaryError.delay`` requeue at a chosen time.

Tests and simulations run the same queue with no worker threads and call
``run_until_idle()`` in their own thread, with a manual clock.
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import structlog

from reconciler.core.clock import Clock, SystemClock

log = structlog.get_logger("workqueue")


class TemporaryError(Exception):
    """Retry this key after ``delay`` seconds (no back-off growth)."""

    def __init__(self, message: str, *, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


@dataclass(frozen=True, kw_only=True)
class Result:
    requeue_after: float | None = None


Handler = Callable[[Hashable], "Result | None"]
# Called after every handler run with (key, seconds, ok): how metrics see reconciles
# without wrapping each controller.
DoneHook = Callable[[Hashable, float, bool], None]


class WorkQueue:
    def __init__(
        self,
        *,
        name: str,
        handler: Handler,
        workers: int = 1,
        clock: Clock | None = None,
        base_delay: float = 0.005,
        max_delay: float = 1000.0,
        on_done: DoneHook | None = None,
    ) -> None:
        self.name = name
        self.on_done = on_done
        self._handler = handler
        self._workers = workers
        self._clock = clock or SystemClock()
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._cond = threading.Condition()
        # A deque: a full pass queues tens of thousands of keys, and list.pop(0) made taking
        # each one O(queue), the whole pass O(keys²).
        self._queue: deque[Hashable] = deque()
        self._queued: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        self._delayed: list[tuple[float, int, Hashable]] = []
        self._seq = itertools.count()
        self._failures: dict[Hashable, int] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._last_progress = self._clock.now()

    # -- adding -------------------------------------------------------------
    def add(self, key: Hashable) -> None:
        with self._cond:
            self._add_locked(key)

    def _add_locked(self, key: Hashable) -> None:
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self._queue.append(key)
        self._cond.notify()

    def add_after(self, key: Hashable, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            heapq.heappush(self._delayed, (self._clock.now() + delay, next(self._seq), key))
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue) + len(self._processing)

    @property
    def last_progress(self) -> float:
        """When a worker last finished an item (or the queue was last idle): the watchdog's signal."""
        return self._last_progress

    def idle(self) -> bool:
        with self._cond:
            return not self._queue and not self._processing

    # -- processing ---------------------------------------------------------
    def _promote_due_locked(self) -> float | None:
        """Move due delayed items to the queue; return seconds until the next one."""
        now = self._clock.now()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key = heapq.heappop(self._delayed)
            self._add_locked(key)
        if self._delayed:
            return max(self._delayed[0][0] - now, 0.0)
        return None

    def _take_locked(self) -> Hashable | None:
        if not self._queue:
            return None
        key = self._queue.popleft()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def _process(self, key: Hashable) -> None:
        delay: float | None = None
        ok = False
        started = time.perf_counter()  # a duration, so never the (maybe manual) clock
        try:
            result = self._handler(key)
            ok = True
            self._failures.pop(key, None)
            if result is not None and result.requeue_after is not None:
                delay = result.requeue_after
        except TemporaryError as exc:
            ok = True  # a chosen retry ("not yet"), not a failure
            delay = exc.delay
            log.info("requeue", queue=self.name, key=str(key), reason=str(exc), delay=delay)
        except Exception as exc:  # a bug or an engine failure must not kill the worker
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            delay = min(self._base_delay * (2 ** (failures - 1)), self._max_delay)
            log.warning("reconcile failed", queue=self.name, key=str(key), error=f"{type(exc).__name__}: {exc}",
                        failures=failures, retry_in=round(delay, 3))
        finally:
            if self.on_done is not None:
                try:
                    self.on_done(key, time.perf_counter() - started, ok)
                except Exception:  # an observer must never break the reconcile loop
                    log.exception("on_done hook failed", queue=self.name)
            with self._cond:
                self._processing.discard(key)
                self._last_progress = self._clock.now()
                if key in self._dirty:
                    self._dirty.discard(key)
                    self._add_locked(key)
        if delay is not None:
            self.add_after(key, delay)

    def run_until_idle(self, *, max_items: int = 1_000_000) -> int:
        """Process due items in the caller's thread until none is left; returns the count."""
        done = 0
        while done < max_items:
            with self._cond:
                self._promote_due_locked()
                key = self._take_locked()
            if key is None:
                return done
            self._process(key)
            done += 1
        return done

    def next_due(self) -> float | None:
        """Clock time of the earliest delayed item, if any (simulations jump to it)."""
        with self._cond:
            return self._delayed[0][0] if self._delayed else None

    def _worker(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopping:
                        return
                    wait = self._promote_due_locked()
                    key = self._take_locked()
                    if key is not None:
                        break
                    self._last_progress = self._clock.now()
                    self._cond.wait(timeout=min(wait, 1.0) if wait is not None else 1.0)
            self._process(key)

    def start(self) -> None:
        for i in range(self._workers):
            thread = threading.Thread(target=self._worker, name=f"{self.name}-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, *, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=timeout)
        self._threads.clear()
