"""The cluster store: the daemon's etcd, as one SQLite file in the state dir.

It holds Kubernetes-shaped objects (Deployments, Pods, ... as plain dicts), their
Events, the Git sync status, the Deployment revision history and a small key/value
table for the daemon's own bookkeeping.

Why it looks like this:
- SQLite in WAL mode, one transaction per write: a `kill -9` at any moment leaves the
  last committed write on disk and never a half-written one. `synchronous=NORMAL` in
  WAL mode is durable against a process crash (only an OS crash may lose the last
  commits), which is the failure the SPEC promises to survive, and it keeps writes fast.
- Reads are served from a write-through in-memory cache. Controllers list and get
  objects far more often than they write them, and json.loads per read is too slow
  for thousands of pods. Each cached object is kept as `marshal` bytes: decoding
  them is the cheapest deep copy CPython offers for JSON-shaped data (measured
  against json.loads, pickle.loads, copy.deepcopy and a hand-written recursive copy),
  and a copy per read is what lets callers mutate what they get without touching
  the store. marshal's format is tied to the Python version, which is fine because
  it never leaves the process; SQLite keeps JSON text.
- Beside the cache, a few secondary indexes (`_SecondaryIndex`): objects by their
  controller owner, by the node a pod is bound to, and by label. Controllers ask "the
  pods of this ReplicaSet" for every key they reconcile; answered by listing and
  filtering the namespace, that made every key O(N) and a resync pass O(N²)
  (docs/performance.md, fix 5). The indexes hold only keys, are kept in step with the
  cache under the store lock, and their answers are decoded copies like `list`'s.
- One process owns the file (the daemon); the cache assumes no other writer.
- Thread-safe: one connection guarded by a lock. Watchers run after the commit, in
  the writer's thread, outside the lock, so a watcher may read or write the store.
"""
from __future__ import annotations

import gc
import json
import marshal
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterable, Mapping
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

# Bump when the schema changes, and add a step to _MIGRATIONS that brings a store of
# the previous version up to it.
SCHEMA_VERSION = 1

# Kubernetes keeps events for an hour; we keep a count instead, so a crash-looping pod
# cannot grow the file without bound. Trim with some slack so a busy daemon does not
# run a DELETE on every event.
MAX_EVENTS = 10_000
_EVENT_TRIM_SLACK = 500

_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE objects (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    resource_version INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
) WITHOUT ROWID;
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,          -- order of last occurrence, oldest first (no semicolons in this script)
    event_name TEXT NOT NULL,
    event_uid TEXT NOT NULL,
    event_namespace TEXT NOT NULL,    -- the involved namespace, or "default" if cluster-scoped
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    uid TEXT NOT NULL,
    type TEXT NOT NULL,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    count INTEGER NOT NULL,
    first_ts TEXT NOT NULL,
    last_ts TEXT NOT NULL
);
CREATE INDEX events_dedupe ON events (kind, namespace, name, reason, message);
CREATE INDEX events_object ON events (event_namespace, kind, name);
CREATE TABLE revisions (
    namespace TEXT NOT NULL,
    deployment TEXT NOT NULL,
    revision INTEGER NOT NULL,
    commit_sha TEXT NOT NULL,
    subject TEXT NOT NULL,
    images TEXT NOT NULL,
    replicaset TEXT NOT NULL,
    PRIMARY KEY (namespace, deployment, revision)
) WITHOUT ROWID;
CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""

# version -> SQL that upgrades a store from version-1 to version.
_MIGRATIONS: dict[int, str] = {}

_Key = tuple[str, str]  # (namespace, name) within one kind
# What a secondary index maps to keys, e.g. ("owner", "ReplicaSet", uid), ("node", name),
# ("label", key, value); the first element names the index.
_Term = tuple[Hashable, ...]


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _index_terms(obj: dict) -> frozenset[_Term]:
    """The index terms of one stored object.

    Owners follow `objects.owner_uid(obj, kind)` exactly: per owner kind, the first
    ownerReference of that kind whose `controller` is true or absent. Malformed parts
    (a non-list ownerReferences, a reference that is not a mapping, an unhashable
    value) are skipped: an index must never make a write fail, and such an object can
    never equal what a lookup asks for.
    """
    meta = obj.get("metadata") or {}
    terms: set[_Term] = set()
    refs = meta.get("ownerReferences")
    if isinstance(refs, list):
        seen: set[Hashable] = set()
        for ref in refs:
            if not isinstance(ref, dict):
                continue
            kind, uid = ref.get("kind"), ref.get("uid")
            if not _hashable(kind) or kind in seen or not ref.get("controller", True):
                continue
            seen.add(kind)
            if _hashable(uid):
                terms.add(("owner", kind, uid))
    spec = obj.get("spec")
    node = spec.get("nodeName") if isinstance(spec, dict) else None
    if node and _hashable(node):
        terms.add(("node", node))
    labels = meta.get("labels")
    if isinstance(labels, dict):
        terms.update(("label", k, v) for k, v in labels.items() if _hashable(v))
    return frozenset(terms)


_NO_TERMS: frozenset[_Term] = frozenset()


class _SecondaryIndex:
    """(kind, term) -> keys. Not thread-safe by itself: the store calls it under its lock.

    It keeps no per-object record of terms (that doubled its memory): a write passes
    the terms of the object it replaces, computed from the old object, which the store
    has at hand (a deterministic function of what was stored).
    """

    def __init__(self) -> None:
        self._keys: dict[tuple[str, _Term], set[_Key]] = {}

    def replace(self, kind: str, key: _Key, *, old: frozenset[_Term], new: frozenset[_Term]) -> None:
        if old == new:
            return
        for term in old - new:
            keys = self._keys.get((kind, term))
            if keys is not None:
                keys.discard(key)
                if not keys:
                    # Empty sets would pile up for every uid ever seen.
                    del self._keys[(kind, term)]
        for term in new - old:
            self._keys.setdefault((kind, term), set()).add(key)

    def lookup(self, kind: str, terms: Iterable[_Term]) -> set[_Key]:
        """Keys carrying every one of `terms` (a copy the caller may keep)."""
        sets = []
        for term in terms:
            keys = self._keys.get((kind, term))
            if not keys:
                return set()
            sets.append(keys)
        if not sets:
            return set()
        # Smallest first: a selector pairing a rare label with a common one costs the rare one.
        sets.sort(key=len)
        result = set(sets[0])
        for keys in sets[1:]:
            result &= keys
            if not result:
                break
        return result


class StoreError(Exception):
    """The store file cannot be used (not a database, a newer schema, closed)."""


def rfc3339(ts: float) -> str:
    """Kubernetes' timestamp format: RFC 3339, UTC, whole seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _dumps(value: object) -> str:
    # Strict JSON (no NaN): the API serves these documents to JSON clients as-is.
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _decode_many(blobs: list[bytes]) -> list[dict]:
    """marshal.loads each blob, with the cyclic GC paused for big batches.

    Thousands of fresh dicts kept alive trigger one generational collection after
    another, each scanning what was built so far: measured 2x slower for 3,000 pods.
    JSON-shaped data holds no reference cycles, so pausing the collector is safe and
    refcounting still frees everything as usual.
    """
    loads = marshal.loads
    if len(blobs) < 256 or not gc.isenabled():
        return [loads(b) for b in blobs]
    gc.disable()
    try:
        return [loads(b) for b in blobs]
    finally:
        gc.enable()


class Store:
    """Objects, events, sync status, revision history and key/values in one SQLite file."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self._path = Path(path)
        self._clock = clock
        self._lock = threading.RLock()
        self._watchers: list[Callable[[str, str, str], None]] = []
        # kind -> {(namespace, name): marshal bytes}; the whole objects table.
        self._objects: dict[str, dict[_Key, bytes]] = {}
        # kind -> keys sorted by (namespace, name); dropped on every write to that kind
        # so list() sorts at most once per change rather than once per call.
        self._sorted: dict[str, list[_Key]] = {}
        # Owner, node and label lookups (see _index_terms); changed with _objects, under the lock.
        self._index = _SecondaryIndex()
        self._kv: dict[str, str] = {}
        self._sync_state: str = "{}"
        self._rv = 0
        self._event_seq = 0
        self._event_rows = 0

        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                str(self._path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store at {self._path}: {exc}.") from None
        try:
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"the store at {self._path} cannot use WAL mode (got {mode}).")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
            self._load()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"{self._path} is not a usable reconciler store: {exc}.") from None
        except BaseException:
            self._db.close()
            raise

    # ------------------------------------------------------------------ lifecycle

    def _migrate(self) -> None:
        with self._transaction():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the store at {self._path} has schema version {version}, newer than "
                    f"this reconciler supports ({SCHEMA_VERSION})."
                )
            if version == 0:
                for statement in _SCHEMA_V1.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                version = 1
            while version < SCHEMA_VERSION:
                version += 1
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
            # PRAGMA cannot take parameters; version is an int we computed.
            self._db.execute(f"PRAGMA user_version={int(version)}")

    def _load(self) -> None:
        db = self._db
        max_rv = 0
        for kind, namespace, name, rv, data in db.execute(
            "SELECT kind, namespace, name, resource_version, data FROM objects"
        ):
            obj = json.loads(data)
            key = (namespace, name)
            self._objects.setdefault(kind, {})[key] = marshal.dumps(obj)
            self._index.replace(kind, key, old=_NO_TERMS, new=_index_terms(obj))
            max_rv = max(max_rv, rv)
        row = db.execute("SELECT value FROM meta WHERE key='resource_version'").fetchone()
        # The counter and the objects are written in the same transaction, so they agree;
        # max() also covers deletes, which advance the counter past every stored object.
        self._rv = max(max_rv, int(row[0]) if row else 0)
        row = db.execute("SELECT value FROM meta WHERE key='sync_state'").fetchone()
        self._sync_state = row[0] if row else "{}"
        self._kv = dict(db.execute("SELECT key, value FROM kv").fetchall())
        seq, rows = db.execute("SELECT COALESCE(MAX(seq), 0), COUNT(*) FROM events").fetchone()
        self._event_seq, self._event_rows = seq, rows

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None  # type: ignore[assignment]

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    class _Tx:
        """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error (under the store lock)."""

        def __init__(self, store: Store) -> None:
            self._store = store

        def __enter__(self) -> sqlite3.Connection:
            self._store._lock.acquire()
            db = self._store._db
            if db is None:
                self._store._lock.release()
                raise StoreError(f"the store at {self._store._path} is closed.")
            try:
                db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self._store._lock.release()
                raise
            return db

        def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
            db = self._store._db
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

    def _transaction(self) -> Store._Tx:
        return Store._Tx(self)

    # ------------------------------------------------------------------ objects

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        with self._lock:
            blob = self._objects.get(kind, {}).get((namespace or "", name))
        # Decode outside the lock: the bytes are immutable, so readers do not queue.
        return None if blob is None else marshal.loads(blob)

    def list(self, kind: str, namespace: str | None = None) -> list[dict]:
        with self._lock:
            objects = self._objects.get(kind)
            if not objects:
                return []
            keys = self._sorted.get(kind)
            if keys is None:
                keys = self._sorted[kind] = sorted(objects)
            if namespace is None:
                blobs = [objects[k] for k in keys]
            else:
                blobs = [objects[k] for k in keys if k[0] == namespace]
        return _decode_many(blobs)

    def owned_by(self, kind: str, *, owner_kind: str, owner_uid: str, namespace: str | None = None) -> list[dict]:
        """Objects of `kind` whose controller owner of `owner_kind` has `owner_uid`,
        sorted like `list`: the same as filtering `list(kind, namespace)` with
        `objects.owner_uid(obj, owner_kind) == owner_uid`, without decoding the rest."""
        return self._lookup(kind, [("owner", owner_kind, owner_uid)], namespace=namespace)

    def on_node(self, kind: str, *, node: str, namespace: str | None = None) -> list[dict]:
        """Objects of `kind` (Pods) whose spec.nodeName is `node`, sorted like `list`."""
        if not node:
            raise ValueError("on_node needs a node name; unbound pods are not indexed")
        return self._lookup(kind, [("node", node)], namespace=namespace)

    def with_labels(self, kind: str, *, labels: Mapping[str, str], namespace: str | None = None) -> list[dict]:
        """Objects of `kind` whose labels include every `labels` pair (values compared
        with ==, as an equality selector does), sorted like `list`. Empty `labels`
        select everything, as an empty selector does."""
        if not labels:
            return self.list(kind, namespace)
        return self._lookup(kind, [("label", k, v) for k, v in labels.items()], namespace=namespace)

    def _lookup(self, kind: str, terms: list[_Term], *, namespace: str | None) -> list[dict]:
        with self._lock:
            objects = self._objects.get(kind)
            if not objects:
                return []
            keys = self._index.lookup(kind, terms)
            if namespace is not None:
                keys = {k for k in keys if k[0] == namespace}
            blobs = [objects[k] for k in sorted(keys)]
        return _decode_many(blobs)

    def put(self, obj: dict) -> dict:
        """Insert or replace an object; the store owns uid, creationTimestamp, generation
        and resourceVersion. Returns the stored copy."""
        stored = self._put(obj)
        self._notify(stored["kind"], stored["metadata"].get("namespace") or "", stored["metadata"]["name"])
        return stored

    def update(self, kind: str, namespace: str, name: str, mutate: Callable[[dict], dict | None]) -> dict | None:
        """Read-modify-write one object atomically: ``mutate`` gets a copy of the stored
        object and returns the new one, or None to write nothing. Returns what was
        stored, or None when the object is absent or nothing was written.

        Controllers write different parts of one object (the Deployment controller a
        ReplicaSet's spec, the ReplicaSet controller its status); doing each change
        under the store lock means neither can lose the other's write."""
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

    def _put(self, obj: dict) -> dict:
        # A JSON round trip copies the caller's dict (we never mutate it), turns tuples
        # into lists so a read after a restart looks like a read now, and rejects what
        # JSON cannot hold before anything is written.
        new = json.loads(_dumps(obj))
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
        terms = _index_terms(new)
        # The lock spans the transaction and the cache update, so no other writer can
        # read the cached old object after this write has committed.
        with self._lock:
            with self._transaction() as db:
                old_blob = self._objects.get(kind, {}).get(key)
                old_terms = _NO_TERMS
                if old_blob is None:
                    if not meta.get("uid"):
                        meta["uid"] = str(uuid.uuid4())
                    if not meta.get("creationTimestamp"):
                        meta["creationTimestamp"] = rfc3339(self._clock())
                    meta["generation"] = 1
                else:
                    old = marshal.loads(old_blob)
                    old_terms = _index_terms(old)
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
                    (kind, namespace, name, rv, _dumps(new)),
                )
                self._set_rv(db, rv)
                blob = marshal.dumps(new)
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
            self._index.replace(kind, key, old=_index_terms(marshal.loads(old_blob)), new=_NO_TERMS)
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

    def watch(self, callback: Callable[[str, str, str], None]) -> None:
        """Call `callback(kind, namespace, name)` after every put/delete commits."""
        with self._lock:
            self._watchers.append(callback)

    def unwatch(self, callback: Callable[[str, str, str], None]) -> None:
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
        namespace = namespace or ""
        now = rfc3339(self._clock())
        with self._transaction() as db:
            self._event_seq += 1
            seq = self._event_seq
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
            self._event_rows += 1
            if self._event_rows > MAX_EVENTS + _EVENT_TRIM_SLACK:
                db.execute(
                    "DELETE FROM events WHERE seq <= (SELECT seq FROM events ORDER BY seq DESC"
                    " LIMIT 1 OFFSET ?)",
                    (MAX_EVENTS,),
                )
                self._event_rows = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    def events(
        self,
        *,
        kind: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        limit: int = 200,
    ) -> list[dict]:
        """The newest `limit` matching events, oldest first.

        `namespace` is the event's own namespace, as `kubectl get events -n` uses it:
        events about cluster-scoped objects (Nodes, Namespaces) live in "default", so
        `namespace=""` and `namespace="default"` both find them.
        """
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
        with self._lock:
            rows = self._connection().execute(sql, params).fetchall()
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

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"the store at {self._path} is closed.")
        return self._db

    # ------------------------------------------------------------------ sync state

    def sync_state(self) -> dict:
        with self._lock:
            return json.loads(self._sync_state)

    def update_sync_state(self, **fields: object) -> dict:
        """Shallow-merge `fields` into the sync state; returns the new whole."""
        with self._lock:
            with self._transaction() as db:
                state = json.loads(self._sync_state)
                state.update(fields)
                text = _dumps(state)
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('sync_state', ?)"
                    " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (text,),
                )
            self._sync_state = text
        return json.loads(text)

    # ------------------------------------------------------------------ revisions

    def record_revision(
        self,
        *,
        namespace: str,
        deployment: str,
        revision: int,
        commit: str,
        subject: str,
        images: list[str],
        replicaset: str,
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO revisions (namespace, deployment, revision, commit_sha,"
                " subject, images, replicaset) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (namespace, deployment, int(revision), commit, subject, _dumps(list(images)), replicaset),
            )

    def revisions(self, *, namespace: str, deployment: str) -> list[dict]:
        with self._lock:
            rows = self._connection().execute(
                "SELECT revision, commit_sha, subject, images, replicaset FROM revisions"
                " WHERE namespace=? AND deployment=? ORDER BY revision",
                (namespace, deployment),
            ).fetchall()
        return [
            {"revision": rev, "commit": commit, "subject": subject, "images": json.loads(images), "replicaset": rs}
            for rev, commit, subject, images, rs in rows
        ]

    # ------------------------------------------------------------------ key/value

    def kv_get(self, key: str, default: object = None) -> object:
        with self._lock:
            text = self._kv.get(key)
        return default if text is None else json.loads(text)

    def kv_set(self, key: str, value: object) -> None:
        text = _dumps(value)
        with self._lock:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (key, text),
                )
            self._kv[key] = text
