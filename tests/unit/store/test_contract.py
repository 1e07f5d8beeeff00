"""The store contract (reconciler/store/protocol.py), one suite run against both
implementations: the SQLite `Store` and the `EtcdStore` on a real 3-member etcd
(fixtures in conftest.py). What is specific to one backend stays beside it:
test_store.py (SQLite: WAL, schema, the file), test_etcd.py (etcd: several daemons,
member restarts, compaction, CAS conflicts).

Where the backends may differ, the contract says so and the tests assert only what it
promises: resourceVersions are ordered but may skip numbers (etcd's revision also counts
kv, events and history writes)."""
from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from reconciler.store import StoreReader, StoreReadWriter, StoreWriter
from reconciler.store import events as events_module
from tests.harness.waiting import wait_for
from tests.unit.store.builders import FakeClock, deployment, pod
from tests.unit.store.conftest import Backend


@pytest.fixture()
def store(any_store: Any) -> Any:
    return any_store


def rv(obj: dict) -> int:
    return int(obj["metadata"]["resourceVersion"])


def test_it_is_a_reader_a_writer_and_both(store: Any) -> None:
    assert isinstance(store, StoreReader)
    assert isinstance(store, StoreWriter)
    assert isinstance(store, StoreReadWriter)


# ---------------------------------------------------------------- objects


def test_insert_fills_uid_timestamp_generation_and_returns_copy(store: Any) -> None:
    assert store.resource_version == 0
    obj = deployment("web")
    original = json.loads(json.dumps(obj))
    stored = store.put(obj)
    assert obj == original, "put must not mutate the caller's dict"
    md = stored["metadata"]
    assert len(md["uid"]) == 36 and md["uid"].count("-") == 4
    assert md["creationTimestamp"] == "2026-11-25T12:00:00Z"
    assert md["generation"] == 1
    assert rv(stored) > 0 and store.resource_version == rv(stored)
    assert store.get("Deployment", "default", "web") == stored

    got = store.get("Deployment", "default", "web")
    got["spec"]["replicas"] = 99
    got["metadata"]["labels"] = {"x": "y"}
    stored["spec"]["template"]["spec"]["containers"][0]["image"] = "mutated"
    again = store.get("Deployment", "default", "web")
    assert again["spec"]["replicas"] == 2
    assert "labels" not in again["metadata"]
    assert again["spec"]["template"]["spec"]["containers"][0]["image"] == "web:1"


def test_insert_keeps_a_given_uid_and_creation_timestamp(store: Any) -> None:
    stored = store.put(deployment("web", uid="given-uid", creationTimestamp="2020-01-01T00:00:00Z", generation=7))
    assert stored["metadata"]["uid"] == "given-uid"
    assert stored["metadata"]["creationTimestamp"] == "2020-01-01T00:00:00Z"
    assert stored["metadata"]["generation"] == 1


def test_update_keeps_identity_and_bumps_generation_only_on_spec_change(store: Any, clock: FakeClock) -> None:
    first = store.put(deployment("web"))
    uid = first["metadata"]["uid"]
    clock.t += 3600

    obj = store.get("Deployment", "default", "web")
    obj["status"] = {"replicas": 2}
    second = store.put(obj)
    assert second["metadata"]["generation"] == 1
    assert rv(second) > rv(first)

    third = store.put(deployment("web", image="web:2", uid="someone-else", generation=42))
    md = third["metadata"]
    assert md["uid"] == uid
    assert md["creationTimestamp"] == "2026-11-25T12:00:00Z"
    assert md["generation"] == 2
    assert "status" not in third, "put replaces the whole object"

    assert store.put(deployment("web", image="web:2"))["metadata"]["generation"] == 2
    assert store.put(deployment("web", image="web:3"))["metadata"]["generation"] == 3


def test_resource_versions_are_global_and_monotonic(store: Any) -> None:
    versions = [
        rv(store.put(deployment("a"))),
        rv(store.put(pod(1))),
        rv(store.put(deployment("a", image="x"))),
    ]
    assert store.delete("Pod", "default", pod(1)["metadata"]["name"])
    versions.append(rv(store.put(deployment("b"))))
    assert versions == sorted(set(versions))
    assert versions[-1] >= versions[-2] + 2, "a delete also consumes a version"
    assert store.resource_version == versions[-1]


def test_list_sorted_by_namespace_and_name_with_namespace_filter(store: Any) -> None:
    for ns, name in [("prod", "b"), ("default", "z"), ("prod", "a"), ("default", "c")]:
        store.put(deployment(name, namespace=ns))
    store.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}})
    store.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})

    keys = [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in store.list("Deployment")]
    assert keys == [("default", "c"), ("default", "z"), ("prod", "a"), ("prod", "b")]
    assert [o["metadata"]["name"] for o in store.list("Deployment", "prod")] == ["a", "b"]
    assert store.list("Deployment", "nope") == []
    assert store.list("Service") == []
    assert [o["metadata"]["name"] for o in store.list("Namespace")] == ["default", "prod"]
    assert [o["metadata"]["name"] for o in store.list("Namespace", "")] == ["default", "prod"]
    assert store.get("Namespace", "", "prod")["metadata"]["name"] == "prod"
    assert store.get("Namespace", None, "prod")["metadata"]["name"] == "prod"
    store.put(deployment("m", namespace="default"))
    assert [o["metadata"]["name"] for o in store.list("Deployment", "default")] == ["c", "m", "z"]


def test_delete(store: Any) -> None:
    first = store.put(deployment("web"))
    assert store.delete("Deployment", "default", "web") is True
    assert store.get("Deployment", "default", "web") is None
    assert store.list("Deployment") == []
    before = store.resource_version
    assert store.delete("Deployment", "default", "web") is False
    assert store.resource_version == before, "deleting nothing writes nothing"
    again = store.put(deployment("web"))
    assert again["metadata"]["generation"] == 1
    assert again["metadata"]["uid"] != first["metadata"]["uid"], "a re-created object is a new object"


def test_put_rejects_bad_objects_without_writing(store: Any) -> None:
    with pytest.raises(ValueError):
        store.put({"metadata": {"name": "x"}})
    with pytest.raises(ValueError):
        store.put({"kind": "Pod", "metadata": {}})
    with pytest.raises(TypeError):
        store.put({"kind": "Pod", "metadata": {"name": "x"}, "spec": {"bad": object()}})
    with pytest.raises(ValueError):
        store.put({"kind": "Pod", "metadata": {"name": "x"}, "spec": {"bad": float("nan")}})
    assert store.resource_version == 0
    assert store.list("Pod") == []


def test_tuples_read_back_as_lists(store: Any) -> None:
    obj = deployment("web")
    obj["spec"]["args"] = ("a", "b")
    assert store.put(obj)["spec"]["args"] == ["a", "b"]
    assert store.get("Deployment", "default", "web")["spec"]["args"] == ["a", "b"]


def test_update_is_read_modify_write(store: Any) -> None:
    store.put(deployment("web"))

    def scale(cur: dict) -> dict:
        cur["spec"]["replicas"] = 5  # in place, as controllers do
        return cur

    out = store.update("Deployment", "default", "web", scale)
    assert out["spec"]["replicas"] == 5 and out["metadata"]["generation"] == 2
    assert store.get("Deployment", "default", "web") == out
    before = store.resource_version
    assert store.update("Deployment", "default", "web", lambda cur: None) is None
    assert store.resource_version == before, "mutate returning None writes nothing"
    assert store.update("Deployment", "default", "absent", scale) is None
    assert store.get("Deployment", "default", "absent") is None


def test_concurrent_updates_lose_nothing(store: Any) -> None:
    store.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"},
               "data": {"a": 0, "b": 0}})
    errors: list[BaseException] = []

    def bump(field: str) -> None:
        try:
            for _ in range(25):
                store.update("ConfigMap", "default", "c",
                             lambda cur: {**cur, "data": {**cur["data"], field: cur["data"][field] + 1}})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=bump, args=(f,)) for f in ("a", "b", "a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert store.get("ConfigMap", "default", "c")["data"] == {"a": 50, "b": 50}


def test_names_with_odd_characters_stay_apart(store: Any) -> None:
    store.put({"kind": "ConfigMap", "metadata": {"name": "a/b", "namespace": "x"}})
    store.put({"kind": "ConfigMap", "metadata": {"name": "b", "namespace": "x/a"}})
    store.put({"kind": "ConfigMap", "metadata": {"name": "a%2Fb", "namespace": "x"}})
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in store.list("ConfigMap")] == [
        ("x", "a%2Fb"), ("x", "a/b"), ("x/a", "b")]
    assert store.get("ConfigMap", "x", "a/b")["metadata"]["name"] == "a/b"


# ---------------------------------------------------------------- watchers


def test_watchers_run_in_the_writers_thread_after_commit_and_see_the_write(store: Any) -> None:
    seen: list[tuple] = []

    def watcher(kind: str, namespace: str, name: str) -> None:
        seen.append((kind, namespace, name, store.get(kind, namespace, name) is not None,
                     threading.current_thread().name))

    def broken(kind: str, namespace: str, name: str) -> None:
        raise RuntimeError("watcher bug")

    store.watch(broken)
    store.watch(watcher)
    counts: list[int] = []

    def writer() -> None:
        store.put(deployment("web"))
        counts.append(len(seen))  # notified before put returned
        store.put({"kind": "Node", "metadata": {"name": "n1"}})
        counts.append(len(seen))
        store.delete("Deployment", "default", "web")
        counts.append(len(seen))
        store.delete("Deployment", "default", "never-existed")  # no event for a no-op
        store.kv_set("k", 1)  # no event for kv, events, sync state or revisions
        store.record_event(kind="Pod", namespace="default", name="p", reason="R", message="m")
        store.update_sync_state(x=1)
        store.record_revision(namespace="default", deployment="web", revision=1, commit="c", subject="s",
                              images=[], replicaset="rs")
        store.put(deployment("sentinel"))

    t = threading.Thread(target=writer, name="writer-thread")
    t.start()
    t.join(30)
    assert counts == [1, 2, 3]
    assert seen == [
        ("Deployment", "default", "web", True, "writer-thread"),
        ("Node", "", "n1", True, "writer-thread"),
        ("Deployment", "default", "web", False, "writer-thread"),
        ("Deployment", "default", "sentinel", True, "writer-thread"),
    ]
    time.sleep(0.2)  # a repeat (say, from a watch stream) would arrive by now
    assert len(seen) == 4, "each write notified exactly once"


def test_a_watcher_may_write_to_the_store(store: Any) -> None:
    def mirror(kind: str, namespace: str, name: str) -> None:
        if kind == "Deployment":
            store.kv_set(f"seen/{name}", True)

    store.watch(mirror)
    store.put(deployment("web"))
    wait_for(lambda: store.kv_get("seen/web") is True)


def test_unwatch_stops_the_callbacks(store: Any) -> None:
    seen: list[tuple[str, str, str]] = []
    callback = lambda kind, ns, name: seen.append((kind, ns, name))  # noqa: E731
    store.watch(callback)
    store.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "default"}})
    wait_for(lambda: len(seen) == 1)
    store.unwatch(callback)
    store.unwatch(callback)  # twice is harmless
    store.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "default"}})
    assert seen == [("ConfigMap", "default", "a")]


# ---------------------------------------------------------------- events


def test_events_shape_dedupe_and_order(store: Any, clock: FakeClock) -> None:
    store.record_event(kind="Pod", namespace="default", name="p1", uid="u1", reason="Scheduled", message="to node1")
    clock.t += 10
    store.record_event(kind="Pod", namespace="default", name="p1", uid="u1", type="Warning", reason="BackOff",
                       message="restarting")
    clock.t += 10
    store.record_event(kind="Pod", namespace="default", name="p1", uid="u1", type="Warning", reason="BackOff",
                       message="restarting")
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

    store.record_event(kind="Pod", namespace="default", name="p1", uid="u1", reason="Scheduled", message="to node1")
    assert [e["reason"] for e in store.events(name="p1")] == ["BackOff", "Scheduled"]
    assert [e["involvedObject"]["name"] for e in store.events()] == ["p1", "p2", "p1"]
    assert [(e["involvedObject"]["name"], e["reason"]) for e in store.events(limit=2)] == [
        ("p2", "Scheduled"), ("p1", "Scheduled")
    ]
    assert store.events(limit=0) == []
    assert store.events(kind="Deployment") == []


def test_events_about_cluster_scoped_objects_live_in_default(store: Any) -> None:
    store.record_event(kind="Node", namespace="", name="n1", reason="NodeReady", message="ready")
    store.record_event(kind="Pod", namespace="prod", name="p", reason="Started", message="ok")
    (ev,) = store.events(kind="Node", namespace="", name="n1")
    assert ev["metadata"]["namespace"] == "default"
    assert ev["involvedObject"]["namespace"] == ""
    assert [e["reason"] for e in store.events(namespace="default")] == ["NodeReady"]
    assert [e["reason"] for e in store.events(namespace="prod")] == ["Started"]
    assert [e["reason"] for e in store.events(kind="Pod")] == ["Started"]


def test_events_are_capped_dropping_the_oldest(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_module, "MAX_EVENTS", 50)
    monkeypatch.setattr(events_module, "_EVENT_TRIM_SLACK", 5)
    for i in range(120):
        store.record_event(kind="Pod", namespace="default", name=f"p{i}", reason="Created", message="x")
    events = store.events(limit=1000)
    assert 50 <= len(events) <= 55
    assert events[-1]["involvedObject"]["name"] == "p119"
    assert "p0" not in {e["involvedObject"]["name"] for e in events}


# ---------------------------------------------------------------- sync state, revisions, kv


def test_sync_state_merges(store: Any) -> None:
    assert store.sync_state() == {}
    assert store.update_sync_state(lastSeenCommit="a" * 40) == {"lastSeenCommit": "a" * 40}
    whole = store.update_sync_state(lastAppliedCommit="b" * 40, errors=[{"file": "x.yaml", "line": 3}])
    assert whole == {"lastSeenCommit": "a" * 40, "lastAppliedCommit": "b" * 40,
                     "errors": [{"file": "x.yaml", "line": 3}]}
    whole["errors"].append("mutated")
    assert store.sync_state()["errors"] == [{"file": "x.yaml", "line": 3}]
    assert store.update_sync_state(errors=[])["errors"] == []


def test_revisions_upsert_and_sort(store: Any) -> None:
    common = {"namespace": "default", "deployment": "web"}
    store.record_revision(**common, revision=2, commit="c2", subject="v2", images=["web:2"], replicaset="web-2")
    store.record_revision(**common, revision=1, commit="c1", subject="v1", images=["web:1", "side:1"],
                          replicaset="web-1")
    store.record_revision(namespace="default", deployment="other", revision=1, commit="x", subject="x", images=[],
                          replicaset="o")
    store.record_revision(**common, revision=3, commit="c3", subject="Revert", images=["web:1"], replicaset="web-1")
    store.record_revision(**common, revision=2, commit="c2", subject="v2 (amended)", images=["web:2"],
                          replicaset="web-2")
    store.record_revision(**common, revision=10, commit="c10", subject="ten", images=[], replicaset="web-10")
    assert store.revisions(**common) == [
        {"revision": 1, "commit": "c1", "subject": "v1", "images": ["web:1", "side:1"], "replicaset": "web-1"},
        {"revision": 2, "commit": "c2", "subject": "v2 (amended)", "images": ["web:2"], "replicaset": "web-2"},
        {"revision": 3, "commit": "c3", "subject": "Revert", "images": ["web:1"], "replicaset": "web-1"},
        {"revision": 10, "commit": "c10", "subject": "ten", "images": [], "replicaset": "web-10"},
    ]
    assert store.revisions(namespace="prod", deployment="web") == []


def test_kv(store: Any) -> None:
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


def test_kv_text_is_the_stored_json(store: Any) -> None:
    # What the controller manager compares a clean reconcile's key/value reads by.
    assert store.kv_text("pins") is None
    store.kv_set("pins", {"a": [1, 2]})
    assert json.loads(store.kv_text("pins")) == {"a": [1, 2]}
    before = store.kv_text("pins")
    store.kv_set("pins", {"a": [1, 3]})
    assert store.kv_text("pins") != before


def test_kv_setdefault_keeps_the_first_value(store: Any) -> None:
    assert store.kv_setdefault("ca", {"cert": "one"}) == {"cert": "one"}
    assert store.kv_setdefault("ca", {"cert": "two"}) == {"cert": "one"}
    assert store.kv_get("ca") == {"cert": "one"}


# ---------------------------------------------------------------- another store on the same data


def test_kv_setdefault_of_two_stores_racing_has_one_winner(backend: Backend) -> None:
    """Two daemons making the cluster's CA at once (SQLite: the same file twice): both get the
    one value that was stored first, never their own second one."""
    first, second = backend.open(), backend.open()
    try:
        won = first.kv_setdefault("race", {"by": "first"})
        assert second.kv_setdefault("race", {"by": "second"}) == won == {"by": "first"}
        assert second.kv_get("race") == {"by": "first"}
    finally:
        first.close()
        second.close()


def test_a_store_opened_again_has_everything(backend: Backend) -> None:
    """SQLite: the file reopened. etcd: a second daemon's store, built from etcd alone."""
    s = backend.open()
    web = s.put(deployment("web"))
    s.put(deployment("web", image="web:2"))
    s.put(pod(1))
    s.put(deployment("gone"))
    s.delete("Deployment", "default", "gone")
    s.record_event(kind="Pod", namespace="default", name="p", reason="Created", message="m")
    s.record_event(kind="Pod", namespace="default", name="p", reason="Created", message="m")
    s.update_sync_state(lastAppliedCommit="abc")
    s.record_revision(namespace="default", deployment="web", revision=1, commit="abc", subject="s", images=["i"],
                      replicaset="rs")
    s.kv_set("k", {"v": 1})
    highest = max(rv(o) for o in s.list("Deployment") + s.list("Pod"))
    before = (s.list("Deployment"), s.list("Pod"), s.events(), s.revisions(namespace="default", deployment="web"))
    s.close()

    s2 = backend.open()
    assert (s2.list("Deployment"), s2.list("Pod"), s2.events(),
            s2.revisions(namespace="default", deployment="web")) == before
    assert s2.get("Deployment", "default", "web")["metadata"]["uid"] == web["metadata"]["uid"]
    assert s2.get("Deployment", "default", "web")["metadata"]["generation"] == 2
    assert s2.get("Deployment", "default", "gone") is None
    assert s2.sync_state() == {"lastAppliedCommit": "abc"}
    assert s2.kv_get("k") == {"v": 1}
    assert s2.resource_version >= highest
    assert rv(s2.put(deployment("new"))) > highest
    s2.record_event(kind="Pod", namespace="default", name="p", reason="Created", message="m")
    assert [e["count"] for e in s2.events(name="p")] == [3]
