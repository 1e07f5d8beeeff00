"""The etcd store's event log: v1 Events, deduplicated and bounded, as `events.py` does in SQLite.

Why it looks like this:
- One key per distinct event (object, reason, message): a repeat bumps that key's count
  with a compare-and-swap, so the deduplication holds across daemons sharing the etcd.
  The key's mod revision is the event's position: a repeat rewrites the key and so moves
  the event to the newest place, and "oldest first" means "least recently seen first"
  (kubectl's lastTimestamp order), as in SQLite.
- Events are neither watched nor cached (they sort before the watched range, see
  etcdkeys.py): they are written often and read rarely (`get events`, `describe`).
- The bound is the SQLite one (`events.MAX_EVENTS`, trimmed with `_EVENT_TRIM_SLACK` of
  slack, both read at call time so a test can lower them): every `slack` events this
  process records, it counts the events and, above the bound, deletes the least
  recently seen down to it. Several daemons each trim, so the bound holds per writer
  with at most `slack` each of overshoot. (Kubernetes bounds events with a one-hour
  lease instead; a count is what this store has always promised.)
- The last-written version of recently recorded events is remembered, so a repeat
  costs one round trip (a compare-and-swap that usually succeeds), not two.
"""
from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Callable

from reconciler.core.bodies import Body
from reconciler.store import codec
from reconciler.store import events as sqlite_events
from reconciler.store.etcdclient import EtcdClient, KeyValue, delete_op, mod_equals, put_op, range_op
from reconciler.store.etcdkeys import KeyLayout

_REMEMBERED = 2000  # recently recorded events whose (revision, value) we keep
_DELETE_BATCH = 100  # etcd refuses transactions of more than 128 operations by default


class EtcdEventLog:
    def __init__(self, client: EtcdClient, keys: KeyLayout, clock: Callable[[], float]) -> None:
        self._client = client
        self._keys = keys
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: dict[bytes, tuple[int, bytes]] = {}
        self._since_trim = 0

    def record(self, *, kind: str, namespace: str, name: str, uid: str, type: str, reason: str, message: str) -> None:
        now = codec.rfc3339(self._clock())
        event_ns = namespace or "default"
        digest = hashlib.sha256("\0".join((kind, namespace, name, reason, message)).encode()).hexdigest()[:24]
        key = self._keys.event(event_ns, kind, name, digest)
        with self._lock:
            revision, value = self._recent.get(key, (0, b""))
        current = json.loads(value) if value else None
        while True:
            if current is None:
                event: Body = {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": event_ns,
                                 "uid": str(uuid.uuid4()), "creationTimestamp": now},
                    "involvedObject": {"kind": kind, "namespace": namespace, "name": name, "uid": uid},
                    "type": type, "reason": reason, "message": message,
                    "count": 1, "firstTimestamp": now, "lastTimestamp": now,
                }
            else:
                event = current
                event["count"] = int(event.get("count", 1)) + 1
                event["lastTimestamp"] = now
                event["type"] = type
                event["involvedObject"]["uid"] = uid or event["involvedObject"].get("uid", "")
            text = codec.dumps(event).encode()
            result = self._client.txn([mod_equals(key, revision)], [put_op(key, text)], [range_op(key)])
            if result.succeeded:
                self._remember(key, result.revision, text)
                break
            kvs = result.range_kvs()
            current = json.loads(kvs[0].value) if kvs else None
            revision = kvs[0].mod_revision if kvs else 0
        self._maybe_trim()

    def _remember(self, key: bytes, revision: int, value: bytes) -> None:
        with self._lock:
            if len(self._recent) >= _REMEMBERED:
                self._recent.clear()
            self._recent[key] = (revision, value)

    def _maybe_trim(self) -> None:
        bound = sqlite_events.MAX_EVENTS
        slack = max(1, sqlite_events._EVENT_TRIM_SLACK)
        with self._lock:
            self._since_trim += 1
            if self._since_trim < slack:
                return
            self._since_trim = 0
        start, end = self._keys.events_range()
        count = self._client.range(start, end, count_only=True).count
        if count <= bound:
            return
        # The least recently seen first (ascending mod revision), keys only.
        oldest = self._client.range(start, end, keys_only=True, sort_by_mod=True, limit=count - bound).kvs
        for i in range(0, len(oldest), _DELETE_BATCH):
            self._client.txn([], [delete_op(kv.key) for kv in oldest[i:i + _DELETE_BATCH]])
        with self._lock:
            for kv in oldest:
                self._recent.pop(kv.key, None)

    def query(self, *, kind: str | None, namespace: str | None, name: str | None, limit: int) -> list[Body]:
        """As `EventLog.query`: the newest `limit` matches, oldest first."""
        event_ns = None if namespace is None else (namespace or "default")
        # The key's leading segments narrow the range; the rest is filtered here.
        start, end = self._keys.events_range(event_ns, kind if event_ns is not None else None,
                                             name if event_ns is not None and kind is not None else None)
        _, kvs = self._client.range_all(start, end)
        matches: list[tuple[int, KeyValue]] = []
        for kv in kvs:
            parsed = self._keys.parse(kv.key)
            if parsed is None:
                continue
            ev_ns, ev_kind, ev_name, _ = parsed.parts
            if (event_ns is not None and ev_ns != event_ns) or (kind is not None and ev_kind != kind) \
                    or (name is not None and ev_name != name):
                continue
            matches.append((kv.mod_revision, kv))
        matches.sort(key=lambda m: m[0])
        limit = max(0, int(limit))
        chosen = matches[len(matches) - limit:] if limit else []
        return [json.loads(kv.value) for _, kv in chosen]

    def copy_in(self, event: Body) -> None:
        """Write one event as it is (count and timestamps kept): `store copy`."""
        involved = event.get("involvedObject") or {}
        kind, namespace, name = involved.get("kind", ""), involved.get("namespace", ""), involved.get("name", "")
        digest = hashlib.sha256("\0".join((kind, namespace, name, event.get("reason", ""),
                                           event.get("message", ""))).encode()).hexdigest()[:24]
        key = self._keys.event(namespace or "default", kind, name, digest)
        self._client.put(key, codec.dumps(event).encode())
