"""Tests for the store's secondary indexes (owner, node, label): every lookup must equal
the scan it replaces — `list()` filtered the way the controllers used to filter — after
any sequence of puts, updates, deletes and reopenings of a real SQLite store, and of an
etcd store on a real 3-member etcd."""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.core import objects as o
from reconciler.core.selectors import from_map
from reconciler.store.etcd import EtcdStore
from reconciler.store.store import Store
from tests.harness.etcd import EtcdCluster
from tests.harness.sim import Sim, deployment

KINDS = ("Pod", "ReplicaSet")
NAMESPACES = ("default", "other")
NAMES = ("a", "b", "c", "d")
OWNER_KINDS = ("ReplicaSet", "Deployment", "Job")
UIDS = ("u1", "u2", "u3")
NODES = ("n1", "n2")
LABELS = {"app": ("web", "db"), "tier": ("front", "1")}


def scan_owned(store: Store, kind: str, *, owner_kind: str, owner_uid: str, namespace: str | None) -> list[dict]:
    return [x for x in store.list(kind, namespace) if o.owner_uid(x, owner_kind) == owner_uid]


def scan_on_node(store: Store, kind: str, *, node: str, namespace: str | None) -> list[dict]:
    return [x for x in store.list(kind, namespace) if (x.get("spec") or {}).get("nodeName") == node]


def scan_labels(store: Store, kind: str, *, labels: dict[str, str], namespace: str | None) -> list[dict]:
    selector = from_map(labels)
    return [x for x in store.list(kind, namespace) if selector.matches(o.labels(x))]


def assert_index_matches_scan(store: Store) -> None:
    for kind in KINDS:
        for namespace in (None, *NAMESPACES):
            for owner_kind in OWNER_KINDS:
                for uid in UIDS:
                    assert store.owned_by(kind, owner_kind=owner_kind, owner_uid=uid, namespace=namespace) == \
                        scan_owned(store, kind, owner_kind=owner_kind, owner_uid=uid, namespace=namespace)
            for node in NODES:
                assert store.on_node(kind, node=node, namespace=namespace) == \
                    scan_on_node(store, kind, node=node, namespace=namespace)
            selectors: list[dict[str, str]] = [{}, {"app": "web"}, {"tier": "1"}, {"app": "web", "tier": "front"},
                                               {"app": "db", "tier": "1"}, {"missing": "x"}]
            for selector in selectors:
                assert store.with_labels(kind, labels=selector, namespace=namespace) == \
                    scan_labels(store, kind, labels=selector, namespace=namespace)


owner_ref = st.fixed_dictionaries(
    {"kind": st.sampled_from(OWNER_KINDS), "uid": st.sampled_from(UIDS), "name": st.just("owner")},
    optional={"controller": st.booleans()},
)
label_map = st.dictionaries(
    st.sampled_from(sorted(LABELS)),
    st.sampled_from(sorted({v for values in LABELS.values() for v in values})),
    max_size=2,
)


@st.composite
def an_object(draw: Any) -> dict:
    meta: dict[str, Any] = {"name": draw(st.sampled_from(NAMES)), "namespace": draw(st.sampled_from(NAMESPACES))}
    refs = draw(st.lists(owner_ref, max_size=3))
    if refs:
        meta["ownerReferences"] = refs
    labels = draw(label_map)
    if labels:
        meta["labels"] = labels
    spec: dict[str, Any] = {}
    node = draw(st.sampled_from((None, *NODES)))
    if node:
        spec["nodeName"] = node
    return {"kind": draw(st.sampled_from(KINDS)), "metadata": meta, "spec": spec}


operation = st.one_of(
    st.tuples(st.just("put"), an_object()),
    st.tuples(st.just("update"), an_object()),
    st.tuples(st.just("delete"), st.sampled_from(KINDS), st.sampled_from(NAMESPACES), st.sampled_from(NAMES)),
    st.tuples(st.just("reopen")),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, max_size=25))
def test_index_equals_the_scan_after_any_writes(tmp_path_factory: pytest.TempPathFactory, ops: list[tuple]) -> None:
    path = tmp_path_factory.mktemp("store") / "store.db"
    check_index_after(ops, lambda: Store(path))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, max_size=25))
def test_the_etcd_store_index_equals_the_scan_after_any_writes(etcd_cluster: EtcdCluster, ops: list[tuple]) -> None:
    """The same on etcd, where "reopen" is a new daemon building its cache and indexes from etcd."""
    prefix = f"/test-{uuid.uuid4().hex[:12]}"
    check_index_after(ops, lambda: EtcdStore(etcd_cluster.endpoints, prefix=prefix))


def check_index_after(ops: list[tuple], open_store: Any) -> None:
    store = open_store()
    try:
        for op in ops:
            if op[0] == "put":
                store.put(op[1])
            elif op[0] == "update":
                new = op[1]
                meta = new["metadata"]

                def mutate(cur: dict, new: dict = new) -> dict:
                    # Owners, labels and node change in place; the object keeps its identity.
                    cur["metadata"]["ownerReferences"] = new["metadata"].get("ownerReferences", [])
                    cur["metadata"]["labels"] = new["metadata"].get("labels", {})
                    cur["spec"] = new["spec"]
                    return cur

                store.update(new["kind"], meta["namespace"], meta["name"], mutate)
            elif op[0] == "delete":
                store.delete(op[1], op[2], op[3])
            else:
                # A reopened store rebuilds its indexes from what it stores.
                store.close()
                store = open_store()
            assert_index_matches_scan(store)
    finally:
        store.close()


@pytest.fixture()
def store(any_store: Any) -> Any:
    """Both backends (conftest.py): the indexes are part of the contract."""
    return any_store


def pod(name: str, *, rs_uid: str | None = None, node: str | None = None, labels: dict | None = None,
        namespace: str = "default") -> dict:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels or {}}
    if rs_uid:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": "rs", "uid": rs_uid, "controller": True}]
    return {"kind": "Pod", "metadata": meta, "spec": {"nodeName": node} if node else {}}


def names(objs: list[dict]) -> list[str]:
    return [x["metadata"]["name"] for x in objs]


def test_owner_change_moves_the_object_between_owners(store: Store) -> None:
    store.put(pod("p1", rs_uid="u1"))
    store.put(pod("p2", rs_uid="u1"))
    assert names(store.owned_by("Pod", owner_kind="ReplicaSet", owner_uid="u1")) == ["p1", "p2"]

    def adopt(cur: dict) -> dict:
        cur["metadata"]["ownerReferences"][0]["uid"] = "u2"
        return cur

    store.update("Pod", "default", "p1", adopt)
    assert names(store.owned_by("Pod", owner_kind="ReplicaSet", owner_uid="u1")) == ["p2"]
    assert names(store.owned_by("Pod", owner_kind="ReplicaSet", owner_uid="u2")) == ["p1"]
    store.delete("Pod", "default", "p2")
    assert store.owned_by("Pod", owner_kind="ReplicaSet", owner_uid="u1") == []


def test_lookups_return_independent_copies_like_list(store: Store) -> None:
    store.put(pod("p1", rs_uid="u1", node="n1", labels={"app": "web"}))
    for lookup in (lambda: store.owned_by("Pod", owner_kind="ReplicaSet", owner_uid="u1"),
                   lambda: store.on_node("Pod", node="n1"),
                   lambda: store.with_labels("Pod", labels={"app": "web"})):
        first = lookup()
        first[0]["metadata"]["labels"]["app"] = "changed"
        first[0]["spec"]["nodeName"] = "elsewhere"
        assert lookup() == store.list("Pod")
        assert store.get("Pod", "default", "p1")["metadata"]["labels"] == {"app": "web"}


def test_owner_lookup_follows_the_controller_reference_only(store: Store) -> None:
    obj = pod("p1")
    obj["metadata"]["ownerReferences"] = [
        {"kind": "ReplicaSet", "name": "x", "uid": "not-controller", "controller": False},
        {"kind": "ReplicaSet", "name": "y", "uid": "controller"},
        {"kind": "ReplicaSet", "name": "z", "uid": "second-controller", "controller": True},
    ]
    store.put(obj)
    assert names(store.owned_by("Pod", owner_kind="ReplicaSet", owner_uid="controller")) == ["p1"]
    assert store.owned_by("Pod", owner_kind="ReplicaSet", owner_uid="not-controller") == []
    assert store.owned_by("Pod", owner_kind="ReplicaSet", owner_uid="second-controller") == []
    # Same uid, other owner kind: not owned.
    assert store.owned_by("Pod", owner_kind="Deployment", owner_uid="controller") == []


def test_malformed_metadata_is_stored_and_never_matches(store: Store) -> None:
    odd = pod("odd", labels={"app": ["web"]})
    odd["metadata"]["ownerReferences"] = ["not-a-mapping", {"kind": ["x"], "uid": "u1"},
                                         {"kind": "ReplicaSet", "uid": {"no": "hash"}}]
    odd["spec"] = {"nodeName": ["n1"]}
    store.put(odd)
    assert store.get("Pod", "default", "odd") is not None
    assert store.owned_by("Pod", owner_kind="ReplicaSet", owner_uid="u1") == []
    assert store.with_labels("Pod", labels={"app": "web"}) == []
    assert store.on_node("Pod", node="n1") == []


def test_label_values_compare_as_stored(store: Store) -> None:
    # A Service selector's values are strings; a label written as a number is not "1".
    store.put(pod("num", labels={"tier": 1}))
    store.put(pod("text", labels={"tier": "1"}))
    assert names(store.with_labels("Pod", labels={"tier": "1"})) == ["text"]


def test_namespace_narrows_every_lookup(store: Store) -> None:
    store.put(pod("p", rs_uid="u1", node="n1", labels={"app": "web"}, namespace="a"))
    store.put(pod("p", rs_uid="u1", node="n1", labels={"app": "web"}, namespace="b"))
    assert [x["metadata"]["namespace"] for x in store.owned_by("Pod", owner_kind="ReplicaSet", owner_uid="u1")] \
        == ["a", "b"]
    assert [x["metadata"]["namespace"] for x in store.on_node("Pod", node="n1", namespace="b")] == ["b"]
    assert [x["metadata"]["namespace"] for x in store.with_labels("Pod", labels={"app": "web"}, namespace="a")] \
        == ["a"]


def test_on_node_refuses_an_empty_node_name(store: Store) -> None:
    with pytest.raises(ValueError, match="node name"):
        store.on_node("Pod", node="")


def test_a_failed_write_leaves_the_index_alone(store: Store) -> None:
    store.put(pod("p1", rs_uid="u1"))
    bad = pod("p1", rs_uid="u2")
    bad["spec"]["x"] = float("nan")  # strict JSON: rejected before anything is written
    with pytest.raises(ValueError):
        store.put(bad)
    assert names(store.owned_by("Pod", owner_kind="ReplicaSet", owner_uid="u1")) == ["p1"]
    assert store.owned_by("Pod", owner_kind="ReplicaSet", owner_uid="u2") == []


def test_controllers_never_scan_a_namespace_for_what_they_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rollout, a Service's endpoints and a resync, with every controller reading pods and
    ReplicaSets through the indexes: a list() of either kind inside a reconcile is what made
    a resync O(N²)."""
    sim = Sim(tmp_path)
    sim.apply(deployment("web", replicas=3, image="hello:v1"))
    sim.apply(deployment("api", replicas=2, image="hello:v1"))
    sim.store.put({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                   "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    sim.settle()

    scans: list[tuple[str, str | None, str]] = []
    running: list[str] = []
    real_list = sim.store.list

    def recording_list(kind: str, namespace: str | None = None) -> list[dict]:
        if running and kind in ("Pod", "ReplicaSet"):
            scans.append((kind, namespace, running[-1]))
        return real_list(kind, namespace)

    def wrap(name: str, handler: Any) -> Any:
        def run(key: Any) -> Any:
            running.append(name)
            try:
                return handler(key)
            finally:
                running.pop()
        return run

    monkeypatch.setattr(sim.store, "list", recording_list)
    for name in ("deployment", "replicaset", "scheduler", "endpoints", "nodelifecycle"):
        queue = sim.manager.queues[name]
        monkeypatch.setattr(queue, "_handler", wrap(name, queue._handler))

    sim.apply(deployment("web", replicas=3, image="hello:v2"))
    sim.settle()
    sim.manager.resync()
    sim.settle()

    assert [p["spec"]["containers"][0]["image"] for p in sim.pods() if o.labels(p)["app"] == "web"] == ["hello:v2"] * 3
    endpoints = sim.store.get("Endpoints", "default", "web")
    assert endpoints is not None
    assert sorted(a["targetRef"]["name"] for s in endpoints["subsets"] for a in s.get("addresses", [])) == \
        names([p for p in sim.pods() if o.labels(p)["app"] == "web"])
    assert len(running) == 0 and scans == []
