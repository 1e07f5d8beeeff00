"""Tests for reconciler.store: objects, watchers, events, sync state, revisions, kv and
reopening, on a real SQLite file in a tmp dir (fixtures in conftest.py). Concurrency,
kill -9 and read speed are in test_durability.py."""
from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest

from reconciler.store import events as events_module
from reconciler.store import schema
from reconciler.store.store import Store, StoreError
from tests.unit.store.builders import FakeClock, deployment, pod

# ---------------------------------------------------------------- objects


def test_creates_parent_dir_and_uses_wal(db_path: Path, store: Store) -> None:
    assert db_path.parent.is_dir()
    con = sqlite3.connect(db_path)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    finally:
        con.close()


def test_insert_fills_uid_timestamp_generation_and_returns_copy(store: Store) -> None:
    obj = deployment("web")
    original = json.loads(json.dumps(obj))
    stored = store.put(obj)
    assert obj == original, "put must not mutate the caller's dict"
    md = stored["metadata"]
    assert len(md["uid"]) == 36 and md["uid"].count("-") == 4
    assert md["creationTimestamp"] == "2026-11-25T12:00:00Z"
    assert md["generation"] == 1
    assert md["resourceVersion"] == "1"
    assert store.get("Deployment", "default", "web") == stored

    got = store.get("Deployment", "default", "web")
    got["spec"]["replicas"] = 99
    got["metadata"]["labels"] = {"x": "y"}
    stored["spec"]["template"]["spec"]["containers"][0]["image"] = "mutated"
    again = store.get("Deployment", "default", "web")
    assert again["spec"]["replicas"] == 2
    assert "labels" not in again["metadata"]
    assert again["spec"]["template"]["spec"]["containers"][0]["image"] == "web:1"


def test_insert_keeps_a_given_uid_and_creation_timestamp(store: Store) -> None:
    stored = store.put(deployment("web", uid="given-uid", creationTimestamp="2020-01-01T00:00:00Z", generation=7))
    assert stored["metadata"]["uid"] == "given-uid"
    assert stored["metadata"]["creationTimestamp"] == "2020-01-01T00:00:00Z"
    assert stored["metadata"]["generation"] == 1


def test_update_keeps_identity_and_bumps_generation_only_on_spec_change(store: Store, clock: FakeClock) -> None:
    first = store.put(deployment("web"))
    uid = first["metadata"]["uid"]
    clock.t += 3600

    # A status-only write: same generation, new resourceVersion.
    obj = store.get("Deployment", "default", "web")
    obj["status"] = {"replicas": 2}
    second = store.put(obj)
    assert second["metadata"]["generation"] == 1
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])

    # A spec change, from a caller who does not know uid/timestamp/generation.
    third = store.put(deployment("web", image="web:2", uid="someone-else", generation=42))
    md = third["metadata"]
    assert md["uid"] == uid
    assert md["creationTimestamp"] == "2026-11-25T12:00:00Z"
    assert md["generation"] == 2
    assert "status" not in third, "put replaces the whole object"

    # Same spec again: no bump.
    assert store.put(deployment("web", image="web:2"))["metadata"]["generation"] == 2
    assert store.put(deployment("web", image="web:3"))["metadata"]["generation"] == 3


def test_resource_versions_are_global_and_monotonic(store: Store) -> None:
    versions = [
        int(store.put(deployment("a"))["metadata"]["resourceVersion"]),
        int(store.put(pod(1))["metadata"]["resourceVersion"]),
        int(store.put(deployment("a", image="x"))["metadata"]["resourceVersion"]),
    ]
    assert store.delete("Pod", "default", pod(1)["metadata"]["name"])
    versions.append(int(store.put(deployment("b"))["metadata"]["resourceVersion"]))
    assert versions == sorted(set(versions))
    assert versions[-1] == versions[-2] + 2, "a delete also consumes a version"
    assert store.resource_version == versions[-1]


def test_list_sorted_by_namespace_and_name_with_namespace_filter(store: Store) -> None:
    for ns, name in [("prod", "b"), ("default", "z"), ("prod", "a"), ("default", "c")]:
        store.put(deployment(name, namespace=ns))
    store.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}})
    store.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})

    keys = [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in store.list("Deployment")]
    assert keys == [("default", "c"), ("default", "z"), ("prod", "a"), ("prod", "b")]
    assert [o["metadata"]["name"] for o in store.list("Deployment", "prod")] == ["a", "b"]
    assert store.list("Deployment", "nope") == []
    assert store.list("Service") == []
    # Cluster-scoped objects live in namespace "".
    assert [o["metadata"]["name"] for o in store.list("Namespace")] == ["default", "prod"]
    assert [o["metadata"]["name"] for o in store.list("Namespace", "")] == ["default", "prod"]
    assert store.get("Namespace", "", "prod")["metadata"]["name"] == "prod"
    # A new object shows up in the (cached, sorted) listing.
    store.put(deployment("m", namespace="default"))
    assert [o["metadata"]["name"] for o in store.list("Deployment", "default")] == ["c", "m", "z"]


def test_delete(store: Store) -> None:
    store.put(deployment("web"))
    assert store.delete("Deployment", "default", "web") is True
    assert store.get("Deployment", "default", "web") is None
    assert store.list("Deployment") == []
    assert store.delete("Deployment", "default", "web") is False
    # Re-created after a delete: a new object with a new uid and generation 1.
    again = store.put(deployment("web"))
    assert again["metadata"]["generation"] == 1


def test_put_rejects_bad_objects_without_writing(store: Store) -> None:
    with pytest.raises(ValueError):
        store.put({"metadata": {"name": "x"}})
    with pytest.raises(ValueError):
        store.put({"kind": "Pod", "metadata": {}})
    with pytest.raises(TypeError):
        store.put({"kind": "Pod", "metadata": {"name": "x"}, "spec": {"bad": object()}})
    assert store.resource_version == 0
    assert store.list("Pod") == []


def test_tuples_read_back_as_lists(store: Store) -> None:
    obj = deployment("web")
    obj["spec"]["args"] = ("a", "b")
    assert store.put(obj)["spec"]["args"] == ["a", "b"]
    assert store.get("Deployment", "default", "web")["spec"]["args"] == ["a", "b"]


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


def test_a_watcher_may_write_to_the_store(store: Store) -> None:
    def mirror(kind: str, namespace: str, name: str) -> None:
        if kind == "Deployment":
            store.kv_set(f"seen/{name}", True)

    store.watch(mirror)
    store.put(deployment("web"))
    assert store.kv_get("seen/web") is True


def test_unwatch_stops_the_callbacks(tmp_path):
    s = Store(tmp_path / "store.db")
    seen: list[tuple[str, str, str]] = []
    callback = lambda kind, ns, name: seen.append((kind, ns, name))  # noqa: E731
    s.watch(callback)
    s.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "default"}})
    s.unwatch(callback)
    s.unwatch(callback)  # twice is harmless
    s.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "default"}})
    assert seen == [("ConfigMap", "default", "a")]
    s.close()


# ---------------------------------------------------------------- events


def test_events_shape_dedupe_and_order(store: Store, clock: FakeClock) -> None:
    store.record_event(kind="Pod", namespace="default", name="p1", uid="u1", reason="Scheduled", message="to node1")
    clock.t += 10
    store.record_event(kind="Pod", namespace="default", name="p1", uid="u1", type="Warning", reason="BackOff", message="restarting")
    clock.t += 10
    store.record_event(kind="Pod", namespace="default", name="p1", uid="u1", type="Warning", reason="BackOff", message="restarting")
    store.record_event(kind="Pod", namespace="default", name="p2", reason="Scheduled", message="to node1")

    events = store.events(kind="Pod", namespace="default", name="p1")
    assert [(e["reason"], e["count"]) for e in events] == [("Scheduled", 1), ("BackOff", 2)]
    backoff = events[1]
    assert backoff["apiVersion"] == "v1" and backoff["kind"] == "Event"
    assert backoff["type"] == "Warning"
    assert backoff["involvedObject"] == {"kind": "Pod", "namespace": "default", "name": "p1", "uid": "u1"}
    assert backoff["firstTimestamp"] == "2026-11-25T12:00:10Z"
    assert backoff["lastTimestamp"] == "2026-11-25T12:00:20Z"
    assert backoff["metadata"]["name"].startswith("p1.")
    assert backoff["metadata"]["namespace"] == "default"
    assert set(backoff["metadata"]) == {"name", "namespace", "uid", "creationTimestamp"}

    # Oldest first = least recently seen first; a repeat moves an event to the end.
    store.record_event(kind="Pod", namespace="default", name="p1", uid="u1", reason="Scheduled", message="to node1")
    assert [e["reason"] for e in store.events(name="p1")] == ["BackOff", "Scheduled"]
    assert [e["involvedObject"]["name"] for e in store.events()] == ["p1", "p2", "p1"]
    # limit keeps the newest, still oldest first.
    assert [(e["involvedObject"]["name"], e["reason"]) for e in store.events(limit=2)] == [
        ("p2", "Scheduled"), ("p1", "Scheduled")
    ]
    assert store.events(kind="Deployment") == []


def test_events_about_cluster_scoped_objects_live_in_default(store: Store) -> None:
    store.record_event(kind="Node", namespace="", name="n1", reason="NodeReady", message="ready")
    store.record_event(kind="Pod", namespace="prod", name="p", reason="Started", message="ok")
    (ev,) = store.events(kind="Node", namespace="", name="n1")
    assert ev["metadata"]["namespace"] == "default"
    assert ev["involvedObject"]["namespace"] == ""
    assert [e["reason"] for e in store.events(namespace="default")] == ["NodeReady"]
    assert [e["reason"] for e in store.events(namespace="prod")] == ["Started"]


def test_events_are_capped_dropping_the_oldest(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_module, "MAX_EVENTS", 50)
    monkeypatch.setattr(events_module, "_EVENT_TRIM_SLACK", 5)
    for i in range(200):
        store.record_event(kind="Pod", namespace="default", name=f"p{i}", reason="Created", message="x")
    events = store.events(limit=1000)
    assert 50 <= len(events) <= 55
    assert events[-1]["involvedObject"]["name"] == "p199"
    assert "p0" not in {e["involvedObject"]["name"] for e in events}


# ---------------------------------------------------------------- sync state, revisions, kv


def test_sync_state_merges(store: Store) -> None:
    assert store.sync_state() == {}
    assert store.update_sync_state(lastSeenCommit="a" * 40) == {"lastSeenCommit": "a" * 40}
    whole = store.update_sync_state(lastAppliedCommit="b" * 40, errors=[{"file": "x.yaml", "line": 3}])
    assert whole == {"lastSeenCommit": "a" * 40, "lastAppliedCommit": "b" * 40, "errors": [{"file": "x.yaml", "line": 3}]}
    whole["errors"].append("mutated")
    assert store.sync_state()["errors"] == [{"file": "x.yaml", "line": 3}]
    assert store.update_sync_state(errors=[])["errors"] == []


def test_revisions_upsert_and_sort(store: Store) -> None:
    common = {"namespace": "default", "deployment": "web"}
    store.record_revision(**common, revision=2, commit="c2", subject="v2", images=["web:2"], replicaset="web-2")
    store.record_revision(**common, revision=1, commit="c1", subject="v1", images=["web:1", "side:1"], replicaset="web-1")
    store.record_revision(namespace="default", deployment="other", revision=1, commit="x", subject="x", images=[], replicaset="o")
    # A revert: the old ReplicaSet comes back as revision 3; revision 1 stays in history.
    store.record_revision(**common, revision=3, commit="c3", subject="Revert", images=["web:1"], replicaset="web-1")
    store.record_revision(**common, revision=2, commit="c2", subject="v2 (amended)", images=["web:2"], replicaset="web-2")
    assert store.revisions(**common) == [
        {"revision": 1, "commit": "c1", "subject": "v1", "images": ["web:1", "side:1"], "replicaset": "web-1"},
        {"revision": 2, "commit": "c2", "subject": "v2 (amended)", "images": ["web:2"], "replicaset": "web-2"},
        {"revision": 3, "commit": "c3", "subject": "Revert", "images": ["web:1"], "replicaset": "web-1"},
    ]
    assert store.revisions(namespace="prod", deployment="web") == []


def test_kv(store: Store) -> None:
    assert store.kv_get("failed") is None
    assert store.kv_get("failed", []) == []
    store.kv_set("failed", ["abc"])
    value = store.kv_get("failed")
    value.append("mutated")
    assert store.kv_get("failed") == ["abc"]
    store.kv_set("failed", {"abc": "deadline"})
    assert store.kv_get("failed") == {"abc": "deadline"}
    with pytest.raises(TypeError):
        store.kv_set("bad", object())


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
