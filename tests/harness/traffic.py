"""Requests that flow while a test breaks something: ``RequestLoop`` GETs one URL over and over
from a thread and counts what answered and what failed.

Why here: test_ha (twice), test_services and test_multinode each had their own copy of this
loop ("no request fails while the leader / a pod / a node goes"); one copy records everything
any of them asserts on: the answers, each failure's send time and error, the last answer, and
the longest time without one.

Use::

    with RequestLoop(f"http://{ip}:80/") as flow:
        flow.wait_running(10)
        ...                      # break something
    assert flow.failed == 0, flow.errors[:5]
"""
from __future__ import annotations

import threading
import time
import urllib.error
from types import TracebackType

from tests.harness.daemon_harness import http_get, wait_for


class RequestLoop:
    """GET ``url`` until stopped (or ``max_requests`` / ``max_seconds``), ``pause`` s between requests."""

    def __init__(self, url: str, *, pause: float = 0.02, timeout: float = 5.0, max_requests: int | None = None,
                 max_seconds: float | None = None) -> None:
        self.url = url
        self.pause = pause
        self.timeout = timeout
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.ok = 0
        self.failed_at: list[float] = []  # time.monotonic() when each failed request was sent
        self.errors: list[str] = []  # "HH:MM:SS repr(exception)", one per failure
        self.last = ""  # the last answer's body
        self.gaps = 0.0  # the longest time between two answers (from the start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def failed(self) -> int:
        return len(self.failed_at)

    def _run(self) -> None:
        started = last_ok = time.monotonic()
        while not self._stop.is_set():
            if self.max_requests is not None and self.ok + self.failed >= self.max_requests:
                return
            if self.max_seconds is not None and time.monotonic() - started >= self.max_seconds:
                return
            sent = time.monotonic()
            try:
                self.last = http_get(self.url, timeout=self.timeout)
                self.ok += 1
                self.gaps = max(self.gaps, time.monotonic() - last_ok)
                last_ok = time.monotonic()
            except (OSError, urllib.error.URLError) as exc:
                self.failed_at.append(sent)
                self.errors.append(f"{time.strftime('%X')} {exc!r}")
            if self.pause:
                self._stop.wait(self.pause)

    def start(self) -> RequestLoop:
        self._thread.start()
        return self

    def wait_running(self, answers: int, *, timeout: float = 30) -> None:
        """Until ``answers`` requests were answered: the loop is running and the URL answers."""
        wait_for(lambda: self.ok > answers, timeout=timeout, what="the client to be running")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def __enter__(self) -> RequestLoop:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
