"""The cluster store: the daemon's etcd, as one SQLite file in the state dir.

It holds Kubernetes-shaped objects (Deployments, Pods, ... as plain dicts), their
Events, the Git sync status, the Deployment revision history and a small key/value
table for the daemon's own bookkeeping. `Store` implements the contract written in
`protocol.py` (`StoreReadWriter`); the semantics promised there are not repeated here.

Why it looks like this:
- SQLite in WAL mode, one transaction per write: a `kill -9` at any moment leaves the
  last committed write on disk and never a half-written one. `synchronous=NORMAL` in
  WAL mode is durable against a process crash (only an OS crash may lose the last
  commits), which is the failure the SPEC promises to survive, and it keeps writes fast.
- Reads are served from a write-through in-memory cache of every object, kept as
  marshal bytes so that a read is a cheap private copy (`codec.py` says why).
- Beside the cache, secondary indexes by owner, node and label (`indexes.py`) answer
  the controllers' "what does this own" without scanning a namespace. They are kept
  in step with the cache under the store lock.
- One process owns the file (the daemon); the cache assumes no other writer.
- Thread-safe: one connection guarded by a lock. Watchers run after the commit, in
  the writer's thread, outside the lock, so a watcher may read or write the store.

The schema and its migrations are in `schema.py`, the event log in `events.py`.
"""
from __future__ import annotations

import builtins  # `list` is a method name in Store; builtins.list is the type
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from reconciler.core.bodies import Body
from reconciler.core.privatefiles import private_file, tighten
from reconciler.store import codec, schema
from reconciler.store.cachedreads import CachedReads
from reconciler.store.codec import rfc3339
from reconciler.store.events import EventLog
from reconciler.store.indexes import NO_TERMS, Key, SecondaryIndex, index_terms
from reconciler.store.protocol import Mutate, StoreError, WatchCallback

if TYPE_CHECKING:
    from reconciler.store.protocol import StoreReadWriter

log = structlog.get_logger(__name__)

# Still importable from here, where they used to live.
__all__ = ["Store", "StoreError", "rfc3339"]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error, under the store lock."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __enter__(self) -> sqlite3.Connection:
        self._store._lock.acquire()
        try:
            db = self._store._connection()
            db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._store._lock.release()
            raise
        self._db = db
        return db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        db = self._db
        try:
            if exc_type is None:
                try:
                    db.execute("COMMIT")
                except BaseException:
                    # A failed COMMIT can leave the transaction open; close it so
                    # the next writer starts clean, then report the failure.
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            else:
                db.execute("ROLLBACK")
        finally:
            self._store._lock.release()


class Store(CachedReads):
    """Objects, events, sync status, revision history and key/values in one SQLite file."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self._path = Path(path)
        self._clock = clock
        self._lock = threading.RLock()
        self._watchers: builtins.list[WatchCallback] = []
        # kind -> {(namespace, name): marshal bytes}; the whole objects table.
        self._objects: dict[str, dict[Key, bytes]] = {}
        # kind -> keys sorted by (namespace, name); dropped on every write to that kind
        # so list() sorts at most once per change rather than once per call.
        self._sorted: dict[str, builtins.list[Key]] = {}
        # Owner, node and label lookups (see index_terms); changed with _objects, under the lock.
        self._index = SecondaryIndex()
        self._kv: dict[str, str] = {}
        self._sync_state: str = "{}"
        self._rv = 0
        self._events = EventLog()
        self._db: sqlite3.Connection | None = None

        try:
            self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Every Secret is in here: 0600 before SQLite writes a byte, whatever the umask. SQLite gives
            # the -wal and -shm files it creates the database file's mode; older ones are tightened.
            private_file(self._path)
            for suffix in ("-wal", "-shm"):
                tighten(self._path.with_name(self._path.name + suffix))
        except OSError as exc:
            raise StoreError(f"cannot open the store at {self._path}: {exc.strerror or exc}.") from None
        try:
            db = self._db = sqlite3.connect(
                str(self._path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store at {self._path}: {exc}.") from None
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"the store at {self._path} cannot use WAL mode (got {mode}).")
            db.execute("PRAGMA synchronous=NORMAL")
            with self._transaction() as tx:
                schema.migrate(tx, path=self._path)
            self._load(db)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StoreError(f"{self._path} is not a usable reconciler store: {exc}.") from None
        except BaseException:
            db.close()
            raise

    # ------------------------------------------------------------------ lifecycle

    def _load(self, db: sqlite3.Connection) -> None:
        max_rv = 0
        for kind, namespace, name, rv, data in db.execute(
            "SELECT kind, namespace, name, resource_version, data FROM objects"
        ):
            obj = codec.loads(data)
            key = (namespace, name)
            self._objects.setdefault(kind, {})[key] = codec.encode(obj)
            self._index.replace(kind, key, old=NO_TERMS, new=index_terms(obj))
            max_rv = max(max_rv, rv)
        row = db.execute("SELECT value FROM meta WHERE key='resource_version'").fetchone()
        # The counter and the objects are written in the same transaction, so they agree;
        # max() also covers deletes, which advance the counter past every stored object.
        self._rv = max(max_rv, int(row[0]) if row else 0)
        row = db.execute("SELECT value FROM meta WHERE key='sync_state'").fetchone()
        self._sync_state = row[0] if row else "{}"
        self._kv = dict(db.execute("SELECT key, value FROM kv").fetchall())
        self._events.load(db)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"the store at {self._path} is closed.")
        return self._db

    # ------------------------------------------------------------------ objects

    # get, list, owned_by, on_node, with_labels: CachedReads (cachedreads.py), over _objects/_index.

    def put(self, obj: Body) -> Body:
        """Insert or replace an object; the store owns uid, creationTimestamp, generation
        and resourceVersion. Returns the stored copy."""
        stored = self._put(obj)
        self._notify(stored["kind"], stored["metadata"].get("namespace") or "", stored["metadata"]["name"])
        return stored

    def update(self, kind: str, namespace: str, name: str, mutate: Mutate) -> Body | None:
        """Read-modify-write one object atomically: ``mutate`` gets a copy of the stored
        object and returns the new one, or None to write nothing. Returns what was
        stored, or None when the object is absent or nothing was written.

        Controllers write different parts of one object (the Deployment controller a
        ReplicaSet's spec, the ReplicaSet controller its status); doing each change
        under the store lock means neither can lose the other's write. (So this store
        calls ``mutate`` exactly once; the contract allows more, see protocol.py.)"""
        with self._lock:
            current = self.get(kind, namespace, name)
            if current is None:
                return None
            changed = mutate(current)
            if changed is None:
                return None
            stored = self._put(changed)
        self._notify(kind, namespace or "", name)
        return stored

    def _put(self, obj: Body) -> Body:
        # A JSON round trip copies the caller's dict (we never mutate it), turns tuples
        # into lists so a read after a restart looks like a read now, and rejects what
        # JSON cannot hold before anything is written.
        new = codec.loads(codec.dumps(obj))
        if not isinstance(new, dict):
            raise TypeError("a stored object must be a dict")
        kind = new.get("kind")
        meta = new.get("metadata")
        if not isinstance(kind, str) or not kind:
            raise ValueError("a stored object needs a kind")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
            raise ValueError(f"a stored {kind} needs metadata.name")
        namespace = meta.get("namespace") or ""
        name = meta["name"]
        key = (namespace, name)
        # The store only fills in uid, timestamps and versions, none of which is indexed.
        terms = index_terms(new)
        # The lock spans the transaction and the cache update, so no other writer can
        # read the cached old object after this write has committed.
        with self._lock:
            with self._transaction() as db:
                old_blob = self._objects.get(kind, {}).get(key)
                old_terms = NO_TERMS
                if old_blob is None:
                    if not meta.get("uid"):
                        meta["uid"] = str(uuid.uuid4())
                    if not meta.get("creationTimestamp"):
                        meta["creationTimestamp"] = rfc3339(self._clock())
                    meta["generation"] = 1
                else:
                    old = codec.decode(old_blob)
                    old_terms = index_terms(old)
                    old_meta = old.get("metadata") or {}
                    meta["uid"] = old_meta.get("uid")
                    meta["creationTimestamp"] = old_meta.get("creationTimestamp")
                    generation = int(old_meta.get("generation") or 1)
                    if new.get("spec") != old.get("spec"):
                        generation += 1
                    meta["generation"] = generation
                rv = self._rv + 1
                meta["resourceVersion"] = str(rv)
                db.execute(
                    "INSERT OR REPLACE INTO objects (kind, namespace, name, resource_version, data)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (kind, namespace, name, rv, codec.dumps(new)),
                )
                self._set_rv(db, rv)
                blob = codec.encode(new)
            # Committed: now (and only now) make it visible to readers.
            self._objects.setdefault(kind, {})[key] = blob
            self._index.replace(kind, key, old=old_terms, new=terms)
            if old_blob is None:
                self._sorted.pop(kind, None)
        return new

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        namespace = namespace or ""
        key = (namespace, name)
        with self._lock:
            with self._transaction() as db:
                old_blob = self._objects.get(kind, {}).get(key)
                if old_blob is None:
                    return False
                db.execute(
                    "DELETE FROM objects WHERE kind=? AND namespace=? AND name=?", (kind, namespace, name)
                )
                # Deletes advance the version too, as in Kubernetes, so "changed since
                # rv N" stays meaningful for anyone who tracks it.
                self._set_rv(db, self._rv + 1)
            self._objects[kind].pop(key, None)
            self._index.replace(kind, key, old=index_terms(codec.decode(old_blob)), new=NO_TERMS)
            self._sorted.pop(kind, None)
        self._notify(kind, namespace, name)
        return True

    def _set_rv(self, db: sqlite3.Connection, rv: int) -> None:
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('resource_version', ?)"
            " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (str(rv),),
        )
        # Reserve it in memory while still inside the transaction (the lock is held), so
        # two writers can never hand out the same version. On rollback a number is
        # skipped, which is harmless: versions only need to grow.
        self._rv = rv

    @property
    def resource_version(self) -> int:
        """The newest resourceVersion handed out (0 for a new store)."""
        with self._lock:
            return self._rv

    # ------------------------------------------------------------------ watchers

    def watch(self, callback: WatchCallback) -> None:
        """Call `callback(kind, namespace, name)` after every put/delete commits."""
        with self._lock:
            self._watchers.append(callback)

    def unwatch(self, callback: WatchCallback) -> None:
        """Stop calling `callback`: a replaced controller manager must stop routing keys."""
        with self._lock:
            if callback in self._watchers:
                self._watchers.remove(callback)

    def _notify(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            watchers = tuple(self._watchers)
        for callback in watchers:
            try:
                callback(kind, namespace, name)
            except Exception:
                # A broken watcher must not fail the write that already happened,
                # nor starve the watchers after it.
                log.exception("store.watcher_failed", kind=kind, namespace=namespace, name=name)

    # ------------------------------------------------------------------ events

    def record_event(
        self,
        *,
        kind: str,
        namespace: str,
        name: str,
        uid: str = "",
        type: str = "Normal",
        reason: str,
        message: str,
    ) -> None:
        """Record a v1 Event about an object; a repeat of the same one bumps its count."""
        now = rfc3339(self._clock())
        with self._transaction() as db:
            self._events.record(
                db, now=now, kind=kind, namespace=namespace or "", name=name, uid=uid, type=type,
                reason=reason, message=message,
            )

    def events(
        self,
        *,
        kind: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        limit: int = 200,
    ) -> builtins.list[Body]:
        """The newest `limit` matching events, oldest first.

        `namespace` is the event's own namespace, as `kubectl get events -n` uses it:
        events about cluster-scoped objects (Nodes, Namespaces) live in "default", so
        `namespace=""` and `namespace="default"` both find them.
        """
        with self._lock:
            return EventLog.query(self._connection(), kind=kind, namespace=namespace, name=name, limit=limit)

    # ------------------------------------------------------------------ sync state

    def sync_state(self) -> dict[str, Any]:
        with self._lock:
            state: dict[str, Any] = codec.loads(self._sync_state)
        return state

    def update_sync_state(self, **fields: object) -> dict[str, Any]:
        """Shallow-merge `fields` into the sync state; returns the new whole."""
        with self._lock:
            with self._transaction() as db:
                state = codec.loads(self._sync_state)
                state.update(fields)
                text = codec.dumps(state)
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('sync_state', ?)"
                    " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (text,),
                )
            self._sync_state = text
        new: dict[str, Any] = codec.loads(text)
        return new

    # ------------------------------------------------------------------ revisions

    def record_revision(
        self,
        *,
        namespace: str,
        deployment: str,
        revision: int,
        commit: str,
        subject: str,
        images: builtins.list[str],
        replicaset: str,
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO revisions (namespace, deployment, revision, commit_sha,"
                " subject, images, replicaset) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (namespace, deployment, int(revision), commit, subject, codec.dumps(list(images)), replicaset),
            )

    def revisions(self, *, namespace: str, deployment: str) -> builtins.list[dict[str, Any]]:
        with self._lock:
            rows = self._connection().execute(
                "SELECT revision, commit_sha, subject, images, replicaset FROM revisions"
                " WHERE namespace=? AND deployment=? ORDER BY revision",
                (namespace, deployment),
            ).fetchall()
        return [
            {"revision": rev, "commit": commit, "subject": subject, "images": codec.loads(images), "replicaset": rs}
            for rev, commit, subject, images, rs in rows
        ]

    # ------------------------------------------------------------------ key/value

    def kv_get(self, key: str, default: object = None) -> Any:
        with self._lock:
            text = self._kv.get(key)
        return default if text is None else codec.loads(text)

    def kv_set(self, key: str, value: object) -> None:
        text = codec.dumps(value)
        with self._lock:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (key, text),
                )
            self._kv[key] = text

    def kv_setdefault(self, key: str, value: object) -> Any:
        text = codec.dumps(value)
        with self._lock:
            with self._transaction() as db:
                db.execute("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING", (key, text))
                stored = db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()[0]
            self._kv[key] = stored
        return codec.loads(stored)


if TYPE_CHECKING:
    # mypy proves here that the SQLite store keeps the whole contract of protocol.py.
    def _satisfies_the_contract(store: Store) -> StoreReadWriter:
        return store
