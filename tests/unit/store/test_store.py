"""SQLite-only tests of reconciler.store.Store: the file (WAL, schema version, refusing a
newer or foreign file), watchers running in the writer's thread with the write on disk,
and reopening with exact versions. The contract both backends keep is tested once for
both in test_contract.py; concurrency, kill -9 and read speed are in test_durability.py."""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from reconciler.store import schema
from reconciler.store.store import Store, StoreError
from tests.unit.store.builders import FakeClock, deployment, pod

# ---------------------------------------------------------------- the file


def test_creates_parent_dir_and_uses_wal(db_path: Path, store: Store) -> None:
    assert db_path.parent.is_dir()
    con = sqlite3.connect(db_path)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    finally:
        con.close()


# ---------------------------------------------------------------- watchers


def test_watchers_run_after_commit_in_writer_thread(store: Store, db_path: Path) -> None:
    seen: list[tuple] = []

    def watcher(kind: str, namespace: str, name: str) -> None:
        # Outside any lock and after the commit: we can read our own write through the
        # store, and another connection sees it on disk too.
        obj = store.get(kind, namespace, name)
        con = sqlite3.connect(db_path)
        try:
            on_disk = con.execute(
                "SELECT COUNT(*) FROM objects WHERE kind=? AND namespace=? AND name=?", (kind, namespace, name)
            ).fetchone()[0]
        finally:
            con.close()
        seen.append((kind, namespace, name, obj is not None, on_disk, threading.current_thread().name))

    def broken(kind: str, namespace: str, name: str) -> None:
        raise RuntimeError("watcher bug")

    store.watch(broken)
    store.watch(watcher)

    def writer() -> None:
        store.put(deployment("web"))
        store.put({"kind": "Node", "metadata": {"name": "n1"}})
        store.delete("Deployment", "default", "web")
        store.delete("Deployment", "default", "never-existed")  # no event for a no-op

    t = threading.Thread(target=writer, name="writer-thread")
    t.start()
    t.join(10)
    assert seen == [
        ("Deployment", "default", "web", True, 1, "writer-thread"),
        ("Node", "", "n1", True, 1, "writer-thread"),
        ("Deployment", "default", "web", False, 0, "writer-thread"),
    ]


# ---------------------------------------------------------------- persistence


def test_reopen_keeps_everything(db_path: Path, clock: FakeClock) -> None:
    s = Store(db_path, clock=clock)
    web = s.put(deployment("web"))
    s.put(deployment("web", image="web:2"))
    s.put(pod(1))
    s.put(deployment("gone"))
    s.delete("Deployment", "default", "gone")
    s.record_event(kind="Pod", namespace="default", name="p", reason="Created", message="m")
    s.record_event(kind="Pod", namespace="default", name="p", reason="Created", message="m")
    s.update_sync_state(lastAppliedCommit="abc")
    s.record_revision(namespace="default", deployment="web", revision=1, commit="abc", subject="s", images=["i"], replicaset="rs")
    s.kv_set("k", {"v": 1})
    before_rv = s.resource_version
    before = (s.list("Deployment"), s.list("Pod"), s.events(), s.revisions(namespace="default", deployment="web"))
    s.close()
    with pytest.raises(StoreError):
        s.put(deployment("after-close"))

    s2 = Store(db_path, clock=clock)
    try:
        assert (s2.list("Deployment"), s2.list("Pod"), s2.events(), s2.revisions(namespace="default", deployment="web")) == before
        assert s2.get("Deployment", "default", "web")["metadata"]["uid"] == web["metadata"]["uid"]
        assert s2.get("Deployment", "default", "web")["metadata"]["generation"] == 2
        assert s2.get("Deployment", "default", "gone") is None
        assert s2.sync_state() == {"lastAppliedCommit": "abc"}
        assert s2.kv_get("k") == {"v": 1}
        assert s2.resource_version == before_rv
        # Versions keep growing past everything handed out before, deletes included.
        assert int(s2.put(deployment("new"))["metadata"]["resourceVersion"]) == before_rv + 1
        s2.record_event(kind="Pod", namespace="default", name="p", reason="Created", message="m")
        assert [e["count"] for e in s2.events(name="p")] == [3]
    finally:
        s2.close()


def test_newer_schema_is_refused(db_path: Path) -> None:
    Store(db_path).close()
    con = sqlite3.connect(db_path)
    con.execute(f"PRAGMA user_version={schema.SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(StoreError, match="newer than this reconciler supports"):
        Store(db_path)


def test_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="is not a usable reconciler store"):
        Store(path)
