"""What a reconcile of a ReplicaSet already in step reads and writes (issue 16: at start-up every
key is reconciled once). It reads its pods once and writes nothing; after making or marking pods
it reads them again, and the status counts what it did."""
from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.controllers.replicaset import ReplicaSetController
from reconciler.core.clock import ManualClock
from reconciler.store.store import Store
from tests.unit.controllers.counting import CountingStore

KEY = ("default", "web")


def replicaset(replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}}}


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "store.db") as store:
        yield store


def status(store: Store) -> dict:
    return store.get("ReplicaSet", *KEY)["status"]


def test_in_step_it_reads_its_pods_once_and_writes_nothing(store: Store) -> None:
    store.put(replicaset(3))
    counting = CountingStore(store)
    controller = ReplicaSetController(store=counting, clock=ManualClock())
    controller.reconcile(KEY)
    assert counting.calls["put", "Pod"] == 3 and counting.calls["owned_by", "Pod"] == 2  # made: read again
    assert status(store)["replicas"] == 3
    version = store.resource_version
    for _ in range(2):
        counting.calls.clear()
        assert controller.reconcile(KEY) is None
        assert counting.calls == {("get", "ReplicaSet"): 1, ("owned_by", "Pod"): 1}
    assert store.resource_version == version


def test_a_failed_pod_is_replaced_and_the_status_read_again(store: Store) -> None:
    store.put(replicaset(2))
    controller = ReplicaSetController(store=store, clock=ManualClock())
    controller.reconcile(KEY)
    failed = store.list("Pod", "default")[0]
    store.update("Pod", "default", failed["metadata"]["name"],
                 lambda p: {**p, "status": {"phase": "Failed"}})
    controller.reconcile(KEY)
    pods = store.list("Pod", "default")
    assert len(pods) == 3 and store.get("Pod", "default", failed["metadata"]["name"])["metadata"]["deletionTimestamp"]
    assert status(store)["replicas"] == 2 and status(store)["terminatingReplicas"] == 1


def test_a_status_that_moved_is_written(store: Store) -> None:
    store.put(replicaset(1))
    controller = ReplicaSetController(store=store, clock=ManualClock())
    controller.reconcile(KEY)
    pod = store.list("Pod", "default")[0]
    store.update("Pod", "default", pod["metadata"]["name"], lambda p: {**p, "status": {
        "phase": "Running", "conditions": [{"type": "Ready", "status": "True",
                                            "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
    controller.reconcile(KEY)
    assert status(store)["readyReplicas"] == 1 and status(store)["availableReplicas"] == 1
