"""What a reconcile of a Deployment already in step reads and writes (issue 16: at start-up every
key is reconciled once, and this was a third of it). It reads the Deployment and its ReplicaSets
once, no pod, and writes nothing; a reconcile that wrote reads again for the rollout-outcome check."""
from __future__ import annotations

import pytest

from reconciler.controllers.deployment import DeploymentController, fields
from reconciler.controllers.deployment.maths import IntOrPercentError
from reconciler.controllers.deployment.sync import OwnedPods
from tests.harness.sim import deployment
from tests.unit.controllers.counting import CountingStore
from tests.unit.controllers.deployment.scenarios import start
from tests.unit.controllers.deployment.test_controller import RecordingHook


def test_a_deployment_in_step_is_read_once_without_its_pods_and_nothing_is_written(sim):
    start(sim, replicas=3)
    store = CountingStore(sim.store)
    hook = RecordingHook()
    controller = DeploymentController(store=store, clock=sim.clock, auto_rollback=hook)  # as after a restart
    version = sim.store.resource_version
    for _ in range(2):  # the first with nothing remembered, then with the template keys known
        store.calls.clear()
        assert controller.reconcile(("default", "web")) is None
        assert store.calls == {("get", "Deployment"): 1, ("owned_by", "ReplicaSet"): 1}
    assert sim.store.resource_version == version
    assert hook.calls == [("complete", "web", 1), ("complete", "web", 1)]


def test_after_a_write_the_outcome_check_reads_again_and_sees_it(sim):
    start(sim, replicas=3)
    sim.apply(deployment(replicas=3, image="hello:v2", commit="c2"))
    store = CountingStore(sim.store)
    hook = RecordingHook()
    controller = DeploymentController(store=store, clock=sim.clock, auto_rollback=hook)
    controller.reconcile(("default", "web"))  # creates the new ReplicaSet
    assert store.calls["put", "ReplicaSet"] == 1
    assert store.calls["get", "Deployment"] == 2 and store.calls["owned_by", "ReplicaSet"] == 2
    # What the reconcile read first has no new ReplicaSet: the hook judges the one just made.
    assert hook.calls == [("check", "web", [])]


def test_a_rollout_still_reads_the_pods_it_decides_on(sim):
    start(sim, replicas=3)
    sim.apply(deployment(replicas=3, image="hello:v2", surge=1, unavailable=0, commit="c2"))
    sim.settle()
    assert sim.sizes("hello:v2") == (3,) and len(sim.pods(image="hello:v2")) == 3
    assert not sim.pods(image="hello:v1")


def test_owned_pods_reads_each_replicaset_once_when_first_asked():
    reads: list[str] = []

    def read(rs: dict) -> list[dict]:
        reads.append(rs["metadata"]["name"])
        return [{"metadata": {"name": f"{rs['metadata']['name']}-x"}}]

    pods = OwnedPods([{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}], read=read)
    assert list(pods) == ["a", "b"] and len(pods) == 2 and reads == []
    assert pods["a"] == [{"metadata": {"name": "a-x"}}]
    assert pods.get("a") and pods.get("zzz", []) == [] and reads == ["a"]
    assert dict(pods) == {"a": [{"metadata": {"name": "a-x"}}], "b": [{"metadata": {"name": "b-x"}}]}
    assert reads == ["a", "b"]


def test_remembered_fenceposts_still_refuse_what_is_not_a_number():
    assert fields.fenceposts(deployment(replicas=4, surge=1, unavailable=0)) == (1, 0)
    with pytest.raises(IntOrPercentError):  # True == 1 for a plain cache: it must not answer (1, 0)
        fields.fenceposts(deployment(replicas=4, surge=True, unavailable=0))  # type: ignore[arg-type]
    with pytest.raises(IntOrPercentError):
        fields.fenceposts(deployment(replicas=4, surge={"x": 1}, unavailable=0))  # type: ignore[arg-type]


def test_an_unchanged_available_condition_is_kept_as_it_was_as_kubernetes_keeps_it():
    from reconciler.controllers.deployment.progress import calculate_status
    from reconciler.core import objects as o
    from reconciler.core.clock import to_rfc3339

    d = deployment(replicas=2, surge=1, unavailable=0)
    d["metadata"]["generation"] = 1
    rs = {"metadata": {"name": "web-1"}, "spec": {"replicas": 2},
          "status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2}}
    before = {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
              "message": "Deployment has minimum availability.", "lastUpdateTime": to_rfc3339(100),
              "lastTransitionTime": to_rfc3339(50)}
    d["status"] = {"replicas": 1, "conditions": [before]}
    assert o.get_condition(calculate_status(d, [rs], rs, now=1000), "Available") == before
    rs["status"]["availableReplicas"] = 0  # it moves: stamped now, a transition
    cond = o.get_condition(calculate_status(d, [rs], rs, now=1000), "Available")
    assert (cond["status"], cond["lastUpdateTime"], cond["lastTransitionTime"]) == (
        "False", to_rfc3339(1000), to_rfc3339(1000))
