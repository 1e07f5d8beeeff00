"""The store file's SQLite schema and its migrations.

The schema version lives in SQLite's `user_version`. A new file gets the current
schema; an older one is brought up step by step; a newer one (written by a newer
reconciler) is refused rather than misread. `migrate` runs inside the store's first
transaction, so a crash mid-migration leaves the file as it was.

To change the schema: bump SCHEMA_VERSION and add to MIGRATIONS the SQL that brings a
store of the previous version up to it (keep SCHEMA_V1 as it is: it is step one).
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from reconciler.store.protocol import StoreError

SCHEMA_VERSION = 1

SCHEMA_V1 = """
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
MIGRATIONS: dict[int, str] = {}


def migrate(db: sqlite3.Connection, *, path: Path) -> None:
    """Bring the open store at `path` to SCHEMA_VERSION; call inside a write transaction."""
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the store at {path} has schema version {version}, newer than "
            f"this reconciler supports ({SCHEMA_VERSION})."
        )
    if version == 0:
        _run_script(db, SCHEMA_V1)
        version = 1
    while version < SCHEMA_VERSION:
        version += 1
        _run_script(db, MIGRATIONS[version])
    # PRAGMA cannot take parameters; version is an int we computed.
    db.execute(f"PRAGMA user_version={int(version)}")


def _run_script(db: sqlite3.Connection, script: str) -> None:
    # One execute per statement: executescript() would COMMIT the open transaction.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)
