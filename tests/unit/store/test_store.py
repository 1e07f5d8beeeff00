"""Tests for reconciler.store: a real SQLite file in a tmp dir, real threads, a real SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from reconciler.store import store as store_module
from reconciler.store.store import Store, StoreError

REPO_ROOT = Path(__file__).resolve().parents[3]


class FakeClock:
    def __init__(self, t: float = 1_795_608_000.0) -> None:  # 2026-11-25T12:00:00Z
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "sub" / "store.db"


@pytest.fixture()
def store(db_path: Path, clock: FakeClock):
    s = Store(db_path, clock=clock)
    yield s
    s.close()


def deployment(name: str, *, namespace: str | None = "default", image: str = "web:1", **meta: object) -> dict:
    md: dict = {"name": name, **meta}
    if namespace is not None:
        md["namespace"] = namespace
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": md,
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": image}]}}},
    }


def pod(i: int, namespace: str = "default") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"web-5d9c7b-{i:05d}",
            "namespace": namespace,
            "labels": {"app": "web", "pod-template-hash": "5d9c7b"},
            "annotations": {"reconciler.io/commit": "a" * 40},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d9c7b", "uid": "u" * 36, "controller": True}
            ],
        },
        "spec": {
            "nodeName": "node1",
            "containers": [
                {
                    "name": "web",
                    "image": "localhost:5000/web:1",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "env": [{"name": f"E{k}", "value": str(k)} for k in range(5)],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1},
                    "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
                }
            ],
        },
        "status": {
            "phase": "Running",
            "podIP": f"127.244.0.{i % 250}",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": "web", "ready": True, "restartCount": 0, "image": "localhost:5000/web:1",
                 "state": {"running": {"startedAt": "2026-11-25T12:00:00Z"}}}
            ],
        },
    }


# ---------------------------------------------------------------- objects


def test_creates_parent_dir_and_uses_wal(db_path: Path, store: Store) -> None:
    assert db_path.parent.is_dir()
    con = sqlite3.connect(db_path)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION
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
    monkeypatch.setattr(store_module, "MAX_EVENTS", 50)
    monkeypatch.setattr(store_module, "_EVENT_TRIM_SLACK", 5)
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
    con.execute(f"PRAGMA user_version={store_module.SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(StoreError, match="newer than this reconciler supports"):
        Store(db_path)


def test_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="is not a usable reconciler store"):
        Store(path)


# ---------------------------------------------------------------- concurrency and crashes


def test_concurrent_writers_and_readers(store: Store) -> None:
    writers, per_writer = 6, 150
    versions: list[int] = []
    versions_lock = threading.Lock()
    errors: list[BaseException] = []
    stop_readers = threading.Event()

    def writer(w: int) -> None:
        try:
            mine = []
            for i in range(per_writer):
                # Every writer also updates one shared object, with a spec no one else uses.
                mine.append(int(store.put(deployment("shared", image=f"w{w}-{i}"))["metadata"]["resourceVersion"]))
                mine.append(int(store.put(pod(w * 1000 + i))["metadata"]["resourceVersion"]))
                store.record_event(kind="Pod", namespace="default", name="shared", reason="Tick", message=f"w{w}")
            with versions_lock:
                versions.extend(mine)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            while not stop_readers.is_set():
                pods = store.list("Pod")
                assert all(p["kind"] == "Pod" for p in pods)
                store.get("Deployment", "default", "shared")
                store.events(name="shared")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in readers + threads:
        t.start()
    for t in threads:
        t.join(120)
    stop_readers.set()
    for t in readers:
        t.join(30)
    assert not errors, errors
    total = writers * per_writer * 2
    assert len(versions) == total
    assert len(set(versions)) == total, "two writes got the same resourceVersion"
    assert store.resource_version == max(versions) == total
    shared = store.get("Deployment", "default", "shared")
    assert shared["metadata"]["generation"] == writers * per_writer, "a concurrent update lost a generation bump"
    assert len(store.list("Pod")) == writers * per_writer
    assert sorted(e["count"] for e in store.events(name="shared")) == [per_writer] * writers


_CRASH_CHILD = r"""
import sys
from reconciler.store.store import Store
s = Store(sys.argv[1])
i = int(s.kv_get("last", -1)) + 1
while True:
    s.put({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": f"d{i % 20}", "namespace": "default"},
           "spec": {"i": i, "blob": "x" * (i % 3000)}})
    s.record_event(kind="Deployment", namespace="default", name=f"d{i % 20}", reason="Step", message=str(i % 7))
    s.kv_set("last", i)
    s.update_sync_state(last=i)
    if i % 50 == 0:
        s.delete("Deployment", "default", f"d{(i + 7) % 20}")
    print(i, flush=True)
    i += 1
"""


def test_kill_9_at_any_moment_leaves_a_consistent_store(db_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    reported_total = 0
    for round_no, kill_after in enumerate([1, 37, 150, 211]):
        child = subprocess.Popen(
            [sys.executable, "-c", _CRASH_CHILD, str(db_path)], stdout=subprocess.PIPE, env=env, cwd=REPO_ROOT
        )
        assert child.stdout is not None
        last_reported = None
        deadline = time.monotonic() + 60
        seen = 0
        while seen < kill_after:
            assert time.monotonic() < deadline, "the writer child made no progress"
            line = child.stdout.readline()
            assert line, f"the writer child exited early with {child.poll()}"
            last_reported = int(line)
            seen += 1
        # Kill it mid-loop: it is writing as fast as it can.
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        child.stdout.close()
        reported_total += seen

        con = sqlite3.connect(db_path)
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            rows = con.execute("SELECT data, resource_version FROM objects").fetchall()
        finally:
            con.close()
        for data, rv in rows:
            assert json.loads(data)["metadata"]["resourceVersion"] == str(rv)

        s = Store(db_path)
        try:
            # Everything the child saw committed is there (durable against a process crash).
            assert s.kv_get("last") >= last_reported
            assert s.sync_state()["last"] >= last_reported
            i = last_reported
            obj = s.get("Deployment", "default", f"d{i % 20}")
            if obj is not None:
                assert obj["spec"]["i"] >= i
                assert obj["spec"]["blob"] == "x" * (obj["spec"]["i"] % 3000)
            else:  # deleted by a later step the child had finished before the kill
                assert s.kv_get("last") > i
            objs = s.list("Deployment")
            versions = [int(o["metadata"]["resourceVersion"]) for o in objs]
            assert len(set(versions)) == len(versions)
            assert int(s.put(deployment(f"probe{round_no}"))["metadata"]["resourceVersion"]) > max(versions)
            assert sum(e["count"] for e in s.events(limit=10_000)) >= reported_total
        finally:
            s.close()


# ---------------------------------------------------------------- performance


def test_reads_are_fast_for_thousands_of_pods(store: Store) -> None:
    for i in range(3000):
        store.put(pod(i, namespace="default" if i % 3 else "prod"))

    def best_of(n: int, fn) -> float:
        best = float("inf")
        for _ in range(n):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return best

    list_time = best_of(3, lambda: store.list("Pod"))
    names = [pod(i)["metadata"]["name"] for i in range(1, 3000, 3)][:1000]
    get_time = best_of(3, lambda: [store.get("Pod", "default", n) for n in names])
    assert len(store.list("Pod")) == 3000
    # The bounds leave room for slow CI machines (measured ~40 ms and ~7 ms on a small VM).
    assert list_time < 0.2, f"list of 3000 pods took {list_time * 1000:.0f} ms"
    assert get_time < 0.05, f"1000 gets took {get_time * 1000:.0f} ms"


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
