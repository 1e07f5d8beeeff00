"""With several daemons on one store, a daemon's own Node is kept like a joined node's: annotated
`reconciler.io/registered`, so no other daemon prunes it and the leader judges it by heartbeats."""
from __future__ import annotations

from pathlib import Path

from reconciler.core.clock import ManualClock
from reconciler.core.keys import ANN_REGISTERED
from reconciler.daemon.membernodes import RegisteredNodes
from reconciler.kubelet.nodestatus import NodeBinding, NodeController
from reconciler.store.store import Store
from runtime.fake import FakeDriver


def annotations(store: Store, name: str) -> dict:
    node = store.get("Node", "", name)
    assert node is not None
    return dict(node["metadata"].get("annotations") or {})


def test_nodes_written_through_it_are_registered_and_other_kinds_untouched(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    wrapped = RegisteredNodes(store)
    clock = ManualClock()
    nodes = NodeController(store=wrapped, clock=clock, nodes=[NodeBinding(name="cp1", url="unix:///x",
                                                                          pod_cidr="10.244.0.0/24",
                                                                          driver=FakeDriver())])
    nodes.heartbeat("cp1")
    assert annotations(store, "cp1")[ANN_REGISTERED] == "true"
    # Another daemon's config does not name cp1: its pruning leaves a registered Node alone.
    other = NodeController(store=store, clock=clock, nodes=[])
    assert other.prune_unconfigured() == []
    wrapped.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}})
    assert ANN_REGISTERED not in (store.get("ConfigMap", "default", "c") or {})["metadata"].get("annotations", {})


def test_a_node_written_before_is_marked_at_its_next_heartbeat(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    store.put({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "cp1"}, "spec": {}, "status": {}})
    wrapped = RegisteredNodes(store)
    assert wrapped.update("Node", "", "cp1", lambda _cur: None) is not None  # nothing else to write: still marked
    assert annotations(store, "cp1")[ANN_REGISTERED] == "true"
    assert wrapped.update("Node", "", "cp1", lambda _cur: None) is None  # already marked: no write
