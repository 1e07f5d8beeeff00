"""The ReplicaSet controller's burst limit (Kubernetes' burstReplicas, 500): one reconcile
creates or deletes at most 500 pods, then requeues the key; the queue alone finishes the
job. Before it, one reconcile of ``replicas: 1200`` created all 1,200 pods in one go (and
of ``replicas: 2147483647``, pods without end)."""
from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.controllers.replicaset import BURST_REPLICAS, ReplicaSetController
from reconciler.core import objects as o
from reconciler.core.clock import ManualClock
from reconciler.core.workqueue import Result, WorkQueue
from reconciler.store.store import Store

KEY = ("default", "big")


def replicaset(replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "big", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "big"}},
                     "template": {"metadata": {"labels": {"app": "big"}},
                                  "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}}}


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "store.db") as store:
        yield store


def active(store: Store) -> int:
    return sum(1 for p in store.list("Pod", "default") if o.pod_is_active(p))


def test_the_burst_is_kubernetes_500() -> None:
    assert BURST_REPLICAS == 500


def test_1200_replicas_are_created_500_then_500_then_200(store: Store) -> None:
    store.put(replicaset(1200))
    controller = ReplicaSetController(store=store, clock=ManualClock())
    seen = []
    for _ in range(3):
        result = controller.reconcile(KEY)
        seen.append((active(store), result))
    assert seen == [(500, Result(requeue_after=0.0)), (1000, Result(requeue_after=0.0)), (1200, None)]
    assert store.get("ReplicaSet", *KEY)["status"]["replicas"] == 1200


def test_the_queue_finishes_a_scale_up_and_scale_down_is_bounded_the_same_way(store: Store) -> None:
    store.put(replicaset(1200))
    controller = ReplicaSetController(store=store, clock=ManualClock())
    queue = WorkQueue(name="replicaset", handler=controller.reconcile, clock=ManualClock())
    queue.add(KEY)
    # No pod watch here: the controller's own requeues alone bring the next batches.
    assert queue.run_until_idle() == 3
    assert active(store) == 1200
    store.update("ReplicaSet", *KEY, lambda rs: {**rs, "spec": {**rs["spec"], "replicas": 100}})
    counts = []
    for _ in range(3):
        controller.reconcile(KEY)
        counts.append(active(store))
    assert counts == [700, 200, 100]

