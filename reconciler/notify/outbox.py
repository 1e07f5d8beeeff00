"""A bounded outbox with one worker thread: how a message leaves without ever holding up reconciling.

Observers of commit events are called in the reconcile loop's thread (see
``reconciler.core.commitevents``) and must return at once, while delivering is a network
call that may hang until its timeout, fail, or be refused. So ``put`` only appends to a
queue and returns; one worker thread per destination delivers in order (a forge must see
``pending`` before ``success`` for a commit), retrying a failed delivery with doubling
back-off up to a cap on attempts, after which the message is given up with a log line.

Bounded on purpose: a destination that stays down must not grow memory without end. When
the queue is full the *oldest* message goes (with a log line): the newest says most about
where the deployment is now.

Hand-written rather than ``queue.Queue``: ``Queue`` blocks or raises when full, it cannot
drop the oldest entry atomically, and the back-off wait must wake at once on ``stop``.
"""
from __future__ import annotations

import collections
import enum
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger("notify")

T = TypeVar("T")

CAPACITY = 100  # messages waiting per destination before the oldest are dropped
MAX_ATTEMPTS = 6  # first try + 5 retries: 1+2+4+8+16 s of back-off, then the message is given up
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 60.0


class Outcome(enum.Enum):
    SENT = "sent"
    RETRY = "retry"  # failed in a way that may pass (a 5xx, a refused connection, a timeout)
    GIVE_UP = "give_up"  # failed in a way retrying cannot fix (a refused token, a 404); already logged


class Outbox(Generic[T]):
    """Messages for one destination, delivered in order by one worker thread."""

    def __init__(self, *, name: str, deliver: Callable[[T], Outcome], describe: Callable[[T], dict[str, str]],
                 capacity: int = CAPACITY, max_attempts: int = MAX_ATTEMPTS, first_backoff: float = FIRST_BACKOFF,
                 max_backoff: float = MAX_BACKOFF) -> None:
        self.name = name
        self._deliver = deliver
        self._describe = describe  # what a log line says about a message (never a secret)
        self._capacity = capacity
        self._max_attempts = max_attempts
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._items: collections.deque[T] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.busy = False  # a delivery (or its back-off) is under way: tests and stop() look at it

    def put(self, item: T) -> None:
        """Queue ``item``; never blocks (beyond a short lock) and never raises."""
        with self._cond:
            if len(self._items) >= self._capacity:
                dropped = self._items.popleft()
                log.warning("notification queue full; dropping the oldest message", destination=self.name,
                            capacity=self._capacity, **self._describe(dropped), action="notify")
            self._items.append(item)
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._items)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"notify-{self.name}", daemon=True)
            self._thread.start()

    def stop(self, *, timeout: float = 2.0) -> None:
        """Stop the worker (waiting at most ``timeout`` for a delivery in flight); what is queued is dropped."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _next(self) -> T | None:
        with self._cond:
            while not self._items and not self._stopping.is_set():
                self._cond.wait()
            if self._stopping.is_set():
                return None
            self.busy = True
            return self._items.popleft()

    def _run(self) -> None:
        while (item := self._next()) is not None:
            try:
                self._send(item)
            finally:
                self.busy = False

    def _send(self, item: T) -> None:
        delay = self._first_backoff
        for attempt in range(1, self._max_attempts + 1):
            try:
                outcome = self._deliver(item)
            except Exception as exc:  # a bug or a library's surprise must not kill the worker
                log.warning("notification failed", destination=self.name, error=f"{type(exc).__name__}: {exc}",
                            **self._describe(item), action="notify")
                outcome = Outcome.RETRY
            if outcome is not Outcome.RETRY:
                return
            if attempt == self._max_attempts:
                break
            log.info("notification will be retried", destination=self.name, attempt=attempt,
                     retry_in=delay, **self._describe(item), action="notify")
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, self._max_backoff)
        log.error("notification given up after retries", destination=self.name, attempts=self._max_attempts,
                  **self._describe(item), action="notify")
