"""Copy a SQLite store file into etcd: `reconciler store copy` (moving to an HA control plane).

Everything the daemon keeps goes across as it is: objects with their uid,
creationTimestamp and generation (owner references point at uids, so they must not
change), the Deployment revision history, the events (in their order, counts kept), the
daemon's key/values (applied-commit bookkeeping, tokens' hashes, ...) and the sync record.
resourceVersions become etcd revisions, as they must.

Why it looks like this:
- The SQLite file is read through a read-only connection, not opened as a `Store`: opening
  would migrate (write) it, and the copy must leave the source exactly as it was, so the
  old daemon can be started again on it if the move is called off.
- Writes go in transactions of up to 100 puts (etcd refuses more than 128 operations per
  transaction by default, and requests over 1.5 MiB): a store of thousands of pods and
  10,000 events moves in seconds, not minutes of one round trip per key.
- A target prefix that already holds keys is refused unless `force` (then it is wiped
  first): copying over another installation's data would mix two clusters.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from reconciler.store import codec, schema
from reconciler.store.etcd import EtcdStore
from reconciler.store.etcdclient import put_op
from reconciler.store.events import EventLog
from reconciler.store.protocol import StoreError

_BATCH_OPS = 100
_BATCH_BYTES = 1_000_000


@dataclass
class CopyReport:
    objects: int = 0
    revisions: int = 0
    events: int = 0
    kv: int = 0
    sync: bool = False


class TargetNotEmpty(StoreError):
    """The etcd prefix already holds keys (and `force` was not given)."""


def copy_sqlite_to_etcd(path: Path, target: EtcdStore, *, force: bool = False) -> CopyReport:
    if not path.is_file():
        raise StoreError(f"{path}: no such store file")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open: {exc}") from None
    try:
        return _copy(db, path, target, force=force)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: is not a usable reconciler store ({exc})") from None
    finally:
        db.close()


def _copy(db: sqlite3.Connection, path: Path, target: EtcdStore, *, force: bool) -> CopyReport:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version != schema.SCHEMA_VERSION:
        raise StoreError(f"{path}: schema version {version}, this reconciler copies version {schema.SCHEMA_VERSION}")
    if not target.is_empty():
        if not force:
            raise TargetNotEmpty(f"the etcd prefix {target.prefix or '/'} already holds data "
                                 "(another installation's?); --force replaces it")
        target.wipe()
    keys = target.keys
    report = CopyReport()
    batch = _Batch(target)
    for (data,) in db.execute("SELECT data FROM objects ORDER BY kind, namespace, name"):
        obj = json.loads(data)
        meta = obj.get("metadata") or {}
        meta.pop("resourceVersion", None)
        batch.put(keys.object(obj["kind"], meta.get("namespace") or "", meta["name"]), codec.dumps(obj))
        report.objects += 1
    for ns, dep, rev, commit, subject, images, rs in db.execute(
            "SELECT namespace, deployment, revision, commit_sha, subject, images, replicaset FROM revisions"):
        record = {"revision": rev, "commit": commit, "subject": subject, "images": json.loads(images),
                  "replicaset": rs}
        batch.put(keys.revision(ns, dep, rev), codec.dumps(record))
        report.revisions += 1
    for key, value in db.execute("SELECT key, value FROM kv"):
        batch.put(keys.kv(key), value)
        report.kv += 1
    row = db.execute("SELECT value FROM meta WHERE key='sync_state'").fetchone()
    if row is not None:
        batch.put(keys.sync(), row[0])
        report.sync = True
    batch.flush()
    # Oldest first, one transaction each batch in order: etcd's revisions keep their order.
    for event in EventLog.query(db, kind=None, namespace=None, name=None, limit=1 << 31):
        target.copy_event(event)
        report.events += 1
    target.resync()
    return report


class _Batch:
    def __init__(self, target: EtcdStore) -> None:
        self._target = target
        self._ops: list[dict[str, object]] = []
        self._bytes = 0

    def put(self, key: bytes, text: str) -> None:
        value = text.encode()
        if self._ops and (len(self._ops) >= _BATCH_OPS or self._bytes + len(value) > _BATCH_BYTES):
            self.flush()
        self._ops.append(put_op(key, value))
        self._bytes += len(key) + len(value)

    def flush(self) -> None:
        if self._ops:
            self._target.client.txn([], self._ops)
        self._ops = []
        self._bytes = 0
