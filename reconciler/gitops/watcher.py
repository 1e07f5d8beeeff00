"""The source watcher: notices when the watched branch moves, and says so once.

`SourceWatcher` turns every trigger into one check of `GitSource.head()`, and calls
`on_change(sha)` when the head differs from the last one it reported.

Why it looks like this:
- It reacts to filesystem events on the git dir (watchdog; a local commit shows up in
  well under a second) and also polls, because inotify can miss changes (network
  filesystems, watch limits) and a remote source can only be polled. The poll is a
  plain timer thread, each wait drawn afresh from ±10% of the interval, so daemons
  started together do not poll one server in step; `trigger()` (the API's `sync`,
  the webhook) checks at once.
- All triggers funnel into one worker thread, so `on_change` never runs concurrently
  and a burst of events (git writes lock files, refs, reflogs for one commit) yields
  one check after a short debounce.
- Except the last step of a ref update: git writes `<ref>.lock` and renames it over
  the ref once the update (reflogs included) is complete, so a move onto a ref is
  checked at once, without the debounce (it was 50 of the ~60 ms from `git commit`
  to the reconcile starting). Other writes (packed-refs written in place, a deleted
  branch, reftable) keep the debounce.
- Only writes under refs/, packed-refs, HEAD and reftable/ wake it: objects/ is where
  the noise is, and reads (our own rev-parse included) must not wake it in a loop.
"""
from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from reconciler.gitops.source import GitSource, SourceError

log = structlog.get_logger(__name__)


class _GitDirHandler(FileSystemEventHandler):
    """Wakes the watcher for changes to branch refs, and ignores the rest of .git."""

    def __init__(self, *, git_dir: Path, wake: Callable[[bool], None]) -> None:
        """``wake(final)``: final is True for a move onto a ref (git's last step of an update)."""
        self._git_dir = str(git_dir)
        self._wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        # git writes `refs/heads/main.lock` and renames it over `refs/heads/main`, so a
        # commit arrives as a move whose destination is the ref; plain writes (packed-refs,
        # reftable) arrive as created/modified.
        dest = event.dest_path if isinstance(event, (FileMovedEvent, DirMovedEvent)) else ""
        if dest and self._relevant(os.fsdecode(dest)):
            self._wake(True)  # the ref is complete: nothing more of this update will follow
            return
        if event.src_path and self._relevant(os.fsdecode(event.src_path)):
            self._wake(False)

    def _relevant(self, path: str) -> bool:
        rel = os.path.relpath(path, self._git_dir).replace(os.sep, "/")
        if rel.endswith(".lock"):
            return False  # the rename that follows is the real change
        return rel in ("HEAD", "packed-refs") or rel.startswith(("refs/heads/", "reftable/")) or rel == "refs/heads"


class SourceWatcher:
    """Calls `on_change(sha)` whenever the branch head differs from the last one reported.

    A local source is watched through filesystem events and polled; a remote one is
    fetched and read every `poll_interval` (each wait drawn from ±10% of it, so daemons
    started together do not poll one server in step) and at once on `trigger()`.
    The first check after `start()` reports the current head unless it equals
    `last_seen` (the head the caller has already handled). `on_change` runs in the
    watcher's own thread, one call at a time. A head that was reported is not reported
    again even if `on_change` raised: the daemon records its own failures, and
    retrying a broken commit every poll would only repeat them.
    """

    DEBOUNCE = 0.05  # quiet time after an event before checking
    MAX_DEBOUNCE = 0.3  # a steady stream of events still gets checked this often
    JITTER = 0.1  # each poll wait is poll_interval x (1 ± JITTER)

    def __init__(
        self,
        *,
        source: GitSource,
        on_change: Callable[[str], None],
        poll_interval: float = 15.0,
        fs_events: bool = True,
        last_seen: str | None = None,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self._source = source
        self._on_change = on_change
        self._poll_interval = poll_interval
        self._fs_events = fs_events and source.is_local
        self._last: str | None = last_seen
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._state_lock = threading.Lock()
        self._started = False
        self._force = False
        self._urgent = False  # a ref update completed: check without the debounce
        self._fetch_due = True
        self._check_count = 0
        self._last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="source-watcher", daemon=True)
        self._poller = threading.Thread(target=self._poll_loop, name="source-poll", daemon=True)
        self._observer: BaseObserver | None = None  # Observer is the platform's subclass

    @property
    def check_count(self) -> int:
        """How many head checks have completed (lets callers wait for a check)."""
        return self._check_count

    @property
    def last_reported(self) -> str | None:
        return self._last

    @property
    def watching_fs(self) -> bool:
        """True while filesystem events are being watched."""
        return self._observer is not None and self._observer.is_alive()

    def start(self) -> None:
        with self._state_lock:
            if self._started:
                raise RuntimeError("a SourceWatcher can be started only once")
            self._started = True
        # Event sources first, the worker last: no commit can slip between the first
        # check and the watch, and on_change (which may call stop()) cannot run before
        # start() has finished building what stop() tears down.
        if self._fs_events:
            self._start_observer()
        self._poller.start()
        self._wake.set()  # the first check, at once
        self._thread.start()

    def _start_observer(self) -> None:
        git_dir = self._source.git_dir
        handler = _GitDirHandler(git_dir=git_dir, wake=self._fs_wake)
        # Only writes matter; opened/closed/attrib events would fire on every ref read,
        # including our own rev-parse, and wake us in a loop.
        kinds = [
            FileCreatedEvent, FileModifiedEvent, FileMovedEvent, FileDeletedEvent,
            DirCreatedEvent, DirMovedEvent, DirDeletedEvent,
        ]
        observer = Observer()
        try:
            # Non-recursive on the git dir itself (packed-refs, HEAD) and recursive only on
            # refs/: objects/ is where the noise is, and it is never watched.
            observer.schedule(handler, str(git_dir), recursive=False, event_filter=kinds)
            observer.schedule(handler, str(git_dir / "refs"), recursive=True, event_filter=kinds)
            if (git_dir / "reftable").is_dir():
                observer.schedule(handler, str(git_dir / "reftable"), recursive=False, event_filter=kinds)
            observer.daemon = True
            observer.start()
        except OSError as exc:
            # inotify watch limits, odd filesystems: polling still works.
            log.warning("source.fs_events_unavailable", git_dir=str(git_dir), error=str(exc))
            return
        self._observer = observer

    def _fs_wake(self, final: bool) -> None:
        if final:
            with self._state_lock:
                self._urgent = True
        self._wake.set()

    def trigger(self, *, force: bool = False) -> None:
        """Check now. With force, report the head even if it was reported before."""
        with self._state_lock:
            self._fetch_due = True
            if force:
                self._force = True
        self._wake.set()

    def _poll_loop(self) -> None:
        # A plain timer rather than a scheduler job: each wait is drawn afresh from
        # [0.9, 1.1] x interval, so the mean period is the interval and never drifts.
        while not self._stopping.wait(self._poll_interval * random.uniform(1 - self.JITTER, 1 + self.JITTER)):
            self._poll()

    def _poll(self) -> None:
        with self._state_lock:
            self._fetch_due = True
        self._wake.set()

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop watching; waits (up to timeout) for an on_change in progress to return."""
        with self._state_lock:
            if not self._started or self._stopping.is_set():
                return
            self._stopping.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
        if threading.current_thread() is not self._poller:
            self._poller.join(timeout)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("source.watcher_stop_timeout", timeout=timeout)

    # ------------------------------------------------------------------ worker

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._stopping.is_set():
                return
            self._debounce()
            if self._stopping.is_set():
                return
            try:
                self._check()
            except Exception:  # never let a bug end the watcher
                log.exception("source.check_failed")

    def _debounce(self) -> None:
        first = time.monotonic()
        while True:
            self._wake.clear()
            if self._take_urgent():
                return  # a ref was just moved into place: the update is complete
            if not self._wake.wait(self.DEBOUNCE):
                return  # quiet: check now
            if self._stopping.is_set() or time.monotonic() - first >= self.MAX_DEBOUNCE:
                return

    def _take_urgent(self) -> bool:
        with self._state_lock:
            urgent, self._urgent = self._urgent, False
        return urgent

    def _check(self) -> None:
        try:
            self._check_once()
        finally:
            # Counted after on_change returned, so "one more check" means "fully handled".
            self._check_count += 1

    def _check_once(self) -> None:
        with self._state_lock:
            force, self._force = self._force, False
            fetch, self._fetch_due = self._fetch_due, False
        try:
            if fetch:
                self._source.fetch()
            sha = self._source.head()
        except SourceError as exc:
            # Log a persistent problem (branch deleted, repo moved) once, not every poll.
            if str(exc) != self._last_error:
                log.warning("source.head_unavailable", error=str(exc))
                self._last_error = str(exc)
            return
        self._last_error = None
        if sha == self._last and not force:
            return
        self._last = sha
        try:
            self._on_change(sha)
        except Exception:
            log.exception("source.on_change_failed", sha=sha)
