"""Live updates: store changes -> topics -> every open page, as server-sent events.

A page subscribes to `/live` (an `EventSource`) and gets `event: change` with the topics
that moved (`{"topics": ["deployments", "overview"]}`); it then fetches its own page's
HTML again (`?fragment=1`) if one of its topics is among them. Like the store's watches,
the stream says *that* something changed, never what: the page reads the current state
itself, so a missed or merged event costs nothing.

Why it looks like this:
- The store's watch callback runs in the writer's thread (a controller's), so it only
  marks topics and returns; it never blocks on a slow client.
- Each client has a mailbox of pending topics: a bounded queue that merges (there are
  five topics, so it can never hold more), so a burst of pod-status writes is one event.
  A client that stops reading fills its socket; the write then times out
  (`WRITE_TIMEOUT`) and the client is dropped. Streams also end after `MAX_STREAM`
  seconds (the browser reconnects by itself), and at most `MAX_CLIENTS` are open, so a
  forgotten tab or a flood of connections holds bounded threads.
- What is not an object write (the sync record, commit states, Events) is not watched by
  the store; one poller thread, running only while a client is connected, compares a
  fingerprint of each of them once a second.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from reconciler.store.protocol import StoreReader

TOPICS = ("overview", "commits", "deployments", "nodes", "events")
# Which pages an object write concerns.
_KIND_TOPICS: Mapping[str, tuple[str, ...]] = {
    "Deployment": ("overview", "deployments"),
    "ReplicaSet": ("deployments",),
    "Pod": ("deployments", "nodes"),
    "Node": ("overview", "nodes"),
}
HEARTBEAT = 15.0  # seconds between comment lines on a quiet stream
MAX_STREAM = 600.0  # seconds a stream lives; EventSource reconnects
MAX_CLIENTS = 32
WRITE_TIMEOUT = 10.0
POLL = 1.0


class TooManyClients(Exception):
    pass


class Mailbox:
    """One client's pending topics: merged, never more than `TOPICS`."""

    def __init__(self) -> None:
        self._pending: set[str] = set()
        self._cond = threading.Condition()
        self.closed = False

    def post(self, topics: Iterable[str]) -> None:
        with self._cond:
            self._pending.update(topics)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify()

    def take(self, timeout: float) -> set[str]:
        """The pending topics (empty after `timeout` with none)."""
        with self._cond:
            if not self._pending and not self.closed:
                self._cond.wait(timeout)
            pending, self._pending = self._pending, set()
            return pending


class Live:
    """Fans store changes and polled fingerprints out to the open streams."""

    def __init__(self, *, store: StoreReader, fingerprints: Mapping[str, Callable[[], Any]],
                 poll: float = POLL, max_clients: int = MAX_CLIENTS) -> None:
        self._store = store
        self._fingerprints = dict(fingerprints)  # topic -> a cheap value that changes when the page would
        self._poll = poll
        self._max = max_clients
        self._clients: set[Mailbox] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._wake = threading.Event()

    def start(self) -> None:
        self._store.watch(self._on_change)
        self._poller = threading.Thread(target=self._poll_loop, name="dashboard-live", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._store.unwatch(self._on_change)
        self._stop.set()
        self._wake.set()
        with self._lock:
            clients = list(self._clients)
        for mailbox in clients:
            mailbox.close()
        if self._poller is not None:
            self._poller.join(timeout=5)

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)

    def subscribe(self) -> Mailbox:
        with self._lock:
            if len(self._clients) >= self._max:
                raise TooManyClients(f"at most {self._max} live pages at once")
            mailbox = Mailbox()
            self._clients.add(mailbox)
        self._wake.set()
        return mailbox

    def unsubscribe(self, mailbox: Mailbox) -> None:
        with self._lock:
            self._clients.discard(mailbox)

    def publish(self, topics: Iterable[str]) -> None:
        wanted = tuple(topics)
        with self._lock:
            clients = list(self._clients)
        for mailbox in clients:
            mailbox.post(wanted)

    def _on_change(self, kind: str, namespace: str, name: str) -> None:
        topics = _KIND_TOPICS.get(kind)
        if topics:
            self.publish(topics)

    def _poll_loop(self) -> None:
        last: dict[str, Any] = {}
        while not self._stop.is_set():
            if not self.clients:
                last.clear()  # a new client reads the page fresh anyway
                self._wake.wait(timeout=5.0)
                self._wake.clear()
                continue
            moved = []
            for topic, read in self._fingerprints.items():
                try:
                    value = read()
                except Exception:  # a fingerprint that cannot be read now is read again next time
                    continue
                if topic in last and last[topic] != value:
                    moved.append(topic)
                last[topic] = value
            if moved:
                self.publish(moved)
            self._stop.wait(self._poll)


def stream(live: Live, mailbox: Mailbox, *, heartbeat: float = HEARTBEAT,
           lifetime: float = MAX_STREAM) -> Iterable[bytes]:
    """The bytes of one SSE stream until `lifetime` passes or the mailbox closes."""
    yield b"retry: 2000\n\n"
    ends = time.monotonic() + lifetime
    try:
        while not mailbox.closed and time.monotonic() < ends:
            topics = mailbox.take(timeout=min(heartbeat, max(ends - time.monotonic(), 0.0)))
            if topics:
                data = json.dumps({"topics": sorted(topics)})
                yield f"event: change\ndata: {data}\n\n".encode()
            else:
                yield b": ping\n\n"  # a client that left makes this write fail
    finally:
        live.unsubscribe(mailbox)
