"""The store's event log: v1 Events about objects, deduplicated and bounded.

Why it looks like this:
- A repeat of an event (same object, reason and message) bumps the count of the one
  already recorded, as Kubernetes' event correlator does, and moves it to the newest
  position, so "oldest first" means "least recently seen first", as kubectl sorts by
  lastTimestamp.
- Kubernetes keeps events for an hour; we keep a count instead, so a crash-looping pod
  cannot grow the file without bound. Trim with some slack so a busy daemon does not
  run a DELETE on every event.
- Events live only in SQLite (no cache): they are written often and read rarely (by
  `kubectl get events` and `describe`).
- `EventLog` is not thread-safe by itself, and opens no transactions: the store calls
  it under its lock, inside its own transaction, with its connection.
"""
from __future__ import annotations

import sqlite3
import uuid

from reconciler.core.bodies import Body

MAX_EVENTS = 10_000
_EVENT_TRIM_SLACK = 500


class EventLog:
    """The events table, with the counters that keep the trimming cheap."""

    def __init__(self) -> None:
        self._seq = 0  # the newest seq handed out
        self._rows = 0  # rows in the table, so a trim needs no COUNT(*) per event

    def load(self, db: sqlite3.Connection) -> None:
        """Pick up the counters of an existing file."""
        self._seq, self._rows = db.execute("SELECT COALESCE(MAX(seq), 0), COUNT(*) FROM events").fetchone()

    def record(
        self,
        db: sqlite3.Connection,
        *,
        now: str,
        kind: str,
        namespace: str,
        name: str,
        uid: str,
        type: str,
        reason: str,
        message: str,
    ) -> None:
        """Record one event at time `now` (inside the caller's transaction)."""
        self._seq += 1
        seq = self._seq
        row = db.execute(
            "SELECT seq, uid FROM events WHERE kind=? AND namespace=? AND name=? AND reason=?"
            " AND message=? ORDER BY seq DESC LIMIT 1",
            (kind, namespace, name, reason, message),
        ).fetchone()
        if row is not None:
            # Moving the row to the newest seq keeps "oldest first" meaning
            # "least recently seen first", as kubectl sorts by lastTimestamp.
            db.execute(
                "UPDATE events SET seq=?, count=count+1, last_ts=?, type=?, uid=? WHERE seq=?",
                (seq, now, type, uid or row[1], row[0]),
            )
            return
        db.execute(
            "INSERT INTO events (seq, event_name, event_uid, event_namespace, kind, namespace,"
            " name, uid, type, reason, message, count, first_ts, last_ts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
            (
                seq,
                f"{name}.{uuid.uuid4().hex[:16]}",
                str(uuid.uuid4()),
                namespace or "default",
                kind,
                namespace,
                name,
                uid,
                type,
                reason,
                message,
                now,
                now,
            ),
        )
        self._rows += 1
        if self._rows > MAX_EVENTS + _EVENT_TRIM_SLACK:
            db.execute(
                "DELETE FROM events WHERE seq <= (SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (MAX_EVENTS,),
            )
            self._rows = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    @staticmethod
    def query(
        db: sqlite3.Connection,
        *,
        kind: str | None,
        namespace: str | None,
        name: str | None,
        limit: int,
    ) -> list[Body]:
        """The newest `limit` matching events as v1 Event objects, oldest first (see
        `StoreReader.events` for what `namespace` means)."""
        where: list[str] = []
        params: list[object] = []
        if kind is not None:
            where.append("kind=?")
            params.append(kind)
        if namespace is not None:
            where.append("event_namespace=?")
            params.append(namespace or "default")
        if name is not None:
            where.append("name=?")
            params.append(name)
        sql = (
            "SELECT event_name, event_namespace, event_uid, kind, namespace, name, uid, type,"
            " reason, message, count, first_ts, last_ts FROM events"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY seq DESC LIMIT ?"
        )
        params.append(max(0, int(limit)))
        rows = db.execute(sql, params).fetchall()
        rows.reverse()
        return [
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": ev_name, "namespace": ev_ns, "uid": ev_uid, "creationTimestamp": first},
                "involvedObject": {"kind": k, "namespace": ns, "name": n, "uid": uid},
                "type": typ,
                "reason": reason,
                "message": message,
                "count": count,
                "firstTimestamp": first,
                "lastTimestamp": last,
            }
            for ev_name, ev_ns, ev_uid, k, ns, n, uid, typ, reason, message, count, first, last in rows
        ]
