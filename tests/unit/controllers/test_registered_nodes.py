"""Nodes that registered themselves through the API (`reconciler node`): known without being in
the daemon's config, and lost when their agent's heartbeat stops changing for REGISTERED_GRACE
(by the controller's own clock); then Kubernetes' toleration applies to their pods."""
from __future__ import annotations

from pathlib import Path

from reconciler.controllers.nodelifecycle import REGISTERED_GRACE, NodeLifecycleController
from reconciler.core import objects as o
from reconciler.core.clock import ManualClock, to_rfc3339
from reconciler.core.keys import ANN_REGISTERED
from reconciler.store.store import Store

TOLERATION = 30.0


def node(name: str, *, beat: float, registered: bool = True) -> dict:
    annotations = {ANN_REGISTERED: "true"} if registered else {}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "annotations": annotations},
            "spec": {"podCIDR": "10.244.9.0/24"},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "EngineReady",
                                       "lastHeartbeatTime": to_rfc3339(beat), "lastTransitionTime": to_rfc3339(beat)}]}}


def pod(name: str, node_name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


def beat(store: Store, name: str, at: float) -> None:
    def mutate(n: dict) -> dict:
        o.get_condition(n["status"], "Ready")["lastHeartbeatTime"] = to_rfc3339(at)
        return n

    store.update("Node", "", name, mutate)


def test_a_registered_node_is_kept_while_it_beats_and_lost_when_it_stops(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    clock = ManualClock()
    controller = NodeLifecycleController(store=store, clock=clock, nodes=["local"], toleration=TOLERATION)
    store.put(node("remote", beat=clock.now()))
    store.put(pod("web-1", "remote"))
    assert controller.usable("remote")

    result = controller.reconcile("remote")
    assert result is not None and result.requeue_after == REGISTERED_GRACE
    for _ in range(3):  # the agent writes a new heartbeat every 10 s: never stale
        clock.advance(REGISTERED_GRACE - 5)
        beat(store, "remote", clock.now())
        controller.reconcile("remote")
    assert o.get_condition(store.get("Node", "", "remote")["status"], "Ready")["status"] == "True"

    clock.advance(REGISTERED_GRACE + 1)  # the agent is gone
    controller.reconcile("remote")
    ready = o.get_condition(store.get("Node", "", "remote")["status"], "Ready")
    assert ready["status"] == "Unknown" and ready["reason"] == "NodeStatusUnknown"
    assert not controller.usable("remote")
    controller.reconcile("remote")
    assert store.get("Pod", "default", "web-1")["status"]["phase"] == "Unknown"  # marked, not yet replaced
    clock.advance(TOLERATION + 1)
    controller.reconcile("remote")
    assert store.get("Pod", "default", "web-1") is None  # replaced elsewhere by its ReplicaSet
    store.close()


def test_a_node_neither_configured_nor_registered_loses_its_pods_at_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    clock = ManualClock()
    controller = NodeLifecycleController(store=store, clock=clock, nodes=["local"], toleration=TOLERATION)
    store.put(node("ghost", beat=clock.now(), registered=False))
    store.put(pod("web-1", "ghost"))
    assert not controller.usable("ghost")
    controller.reconcile("ghost")
    assert store.get("Pod", "default", "web-1") is None
    store.close()


def test_the_daemons_start_up_keeps_registered_nodes(tmp_path: Path) -> None:
    from reconciler.kubelet.nodestatus import NodeController

    store = Store(tmp_path / "store.db")
    clock = ManualClock()
    store.put(node("joined", beat=clock.now()))
    store.put(node("left-the-config", beat=clock.now(), registered=False))
    assert NodeController(store=store, clock=clock, nodes=[]).prune_unconfigured() == ["left-the-config"]
    assert store.get("Node", "", "joined") is not None
    store.close()
