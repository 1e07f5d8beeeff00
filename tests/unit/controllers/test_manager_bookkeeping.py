"""The controller manager's incremental bookkeeping (what made each step cost what changed):
the clean records filed by what they read (``cleanrecords.py``) and the pods by node.
Each must answer exactly what a scan would."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.controllers.cleanrecords import CleanRecords
from reconciler.controllers.manager import ControllerManager
from reconciler.controllers.tracking import Clean
from reconciler.core.clock import ManualClock
from reconciler.store.store import Store


def _clean(*deps, kv=()) -> Clean:
    return Clean(seq=0, deps=frozenset(deps), kv=tuple(kv))


def test_a_change_drops_exactly_the_records_that_read_it():
    records = CleanRecords()
    records.add_queue("q")
    records.keep("q", "a", _clean(("Pod", "ns", "p1"), ("list", "Pod", "ns")))
    records.keep("q", "b", _clean(("Pod", "ns", "p2")))
    records.invalidate(("Pod", "ns", "p1"))
    assert set(records.by_queue["q"]) == {"b"}
    # "a" is no longer filed under its other read: its change drops nothing more.
    records.keep("q", "b", _clean(("Pod", "ns", "p2"), ("list", "Pod", "ns")))
    records.invalidate(("list", "Pod", "ns"))
    assert records.by_queue["q"] == {}
    assert records._readers == {} and records._kv_readers == {}


def test_a_replaced_record_is_filed_only_under_its_new_reads():
    records = CleanRecords()
    records.add_queue("q")
    records.keep("q", "a", _clean(("Pod", "ns", "old"), kv=[("k", "1")]))
    records.keep("q", "a", _clean(("Pod", "ns", "new")))
    records.invalidate(("Pod", "ns", "old"))
    assert set(records.by_queue["q"]) == {"a"}
    assert records.kv_values() == []
    records.drop_gone("q", set())
    assert records.by_queue["q"] == {} and records._readers == {}


def test_kv_readers_are_grouped_by_the_value_they_read():
    records = CleanRecords()
    records.add_queue("q")
    records.keep("q", "a", _clean(kv=[("k", "1"), ("j", "2")]))
    records.keep("q", "b", _clean(kv=[("k", "3")]))
    records.keep("q", "c", _clean(kv=[("k", "1")]))
    assert {k: sorted(values) for k, values in records.kv_values()} == {"k": ["1", "3"], "j": ["2"]}
    records.drop_kv("k", "1")
    assert set(records.by_queue["q"]) == {"b"}
    assert records.kv_values() == [("k", ["3"])]


def _pod(name: str, node: str | None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node} if node else {}}


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.sampled_from([None, "n1", "n2", "gone"])), max_size=25))
def test_pods_by_node_equal_a_scan_of_the_store(tmp_path_factory, steps):
    clock = ManualClock()
    store = Store(tmp_path_factory.mktemp("s") / "store.db", clock=clock.now)
    manager = ControllerManager(store=store, clock=clock, threaded=False)
    try:
        for name, node in steps:
            if node == "gone":
                store.delete("Pod", "default", name)
            else:
                store.put(_pod(name, node))
        pods = store.list("Pod")
        nodes = {p["metadata"]["name"]: (p.get("spec") or {}).get("nodeName") for p in pods}
        assert manager.unbound_pods() == sorted(("default", n) for n, node in nodes.items() if not node)
        assert manager.pod_nodes() == {node for node in nodes.values() if node}
        for node in ("n1", "n2"):
            assert manager.pods_on(node) == sorted(("default", n) for n, at in nodes.items() if at == node)
    finally:
        store.close()
