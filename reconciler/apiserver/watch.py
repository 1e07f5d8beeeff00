"""`?watch=true` on a list path: the objects as a stream of Kubernetes watch events.

`GET /api/v1/pods?watch=true&fieldSelector=spec.nodeName=node2` answers, as chunked
newline-delimited JSON, `{"type": "ADDED", "object": {...}}` for every matching object
now, one `BOOKMARK`, then `ADDED`/`MODIFIED`/`DELETED` as they change, and a `BOOKMARK`
every few seconds while nothing does. A node agent learns of a pod bound to it at once.

Why it looks like this:
- Subscribe first, then send the snapshot: a change made between the two is sent
  again after it, never lost (events carry whole objects, so a repeat is harmless; the
  client is level-based anyway). So there is no resourceVersion bookkeeping: a client
  that reconnects takes the new snapshot as the truth.
- An object that stops matching (a pod rebound elsewhere) is `DELETED` for this
  watcher, as in Kubernetes.
- The periodic `BOOKMARK` lets the client tell a quiet stream from a dead connection
  (its read times out), and lets the server notice a client that left (the write
  fails) and drop its store watch. It is due `heartbeat` seconds after the last line
  *sent*: changes this watcher filters out (other nodes' pods) wake it without
  sending anything, and with 50 nodes writing pod status they came often enough that
  a quiet node's stream went silent until its agent gave up on it.
"""
from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

HEARTBEAT = 5.0  # seconds between BOOKMARKs on a quiet stream


def _line(kind: str, obj: dict[str, Any]) -> str:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n"


def watch_stream(store: Any, *, kind: str, namespace: str | None, matches: Callable[[dict[str, Any]], bool],
                 typed: Callable[[dict[str, Any]], dict[str, Any]], heartbeat: float = HEARTBEAT) -> Iterator[str]:
    changes: queue.Queue[tuple[str, str]] = queue.Queue()

    def on_change(changed_kind: str, ns: str, name: str) -> None:
        if changed_kind == kind and (namespace is None or ns == namespace):
            changes.put((ns, name))

    store.watch(on_change)
    try:
        sent: set[tuple[str, str]] = set()
        for obj in store.list(kind, namespace):
            if matches(obj):
                meta = obj.get("metadata") or {}
                sent.add((meta.get("namespace") or "", meta.get("name") or ""))
                yield _line("ADDED", typed(obj))
        yield _line("BOOKMARK", {"metadata": {"resourceVersion": str(store.resource_version)}})
        last_sent = time.monotonic()
        while True:
            wait = heartbeat - (time.monotonic() - last_sent)
            try:
                key = changes.get(timeout=wait) if wait > 0 else None
            except queue.Empty:
                key = None
            if key is None:
                yield _line("BOOKMARK", {"metadata": {"resourceVersion": str(store.resource_version)}})
                last_sent = time.monotonic()
                continue
            obj = store.get(kind, *key)
            if obj is not None and matches(obj):
                yield _line("MODIFIED" if key in sent else "ADDED", typed(obj))
                sent.add(key)
                last_sent = time.monotonic()
            elif key in sent:
                sent.discard(key)
                yield _line("DELETED", {"metadata": {"namespace": key[0], "name": key[1]}})
                last_sent = time.monotonic()
    finally:
        store.unwatch(on_change)
