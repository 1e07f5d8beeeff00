"""The controller's entry (controller.py): a first rollout, deletion, and what it tells its RolloutHook."""
from __future__ import annotations

from reconciler.controllers.deployment import DeploymentController
from reconciler.controllers.deployment.hooks import NoRolloutHook, RolloutHook
from reconciler.core import objects as o
from reconciler.core.keys import ANN_REVISION, LABEL_TEMPLATE_HASH
from reconciler.gitops.autorollback import AutoRollback
from tests.harness.sim import deployment
from tests.unit.controllers.deployment.scenarios import auto, start


def test_first_rollout_creates_replicas_and_completes(sim):
    start(sim, replicas=3)
    d = sim.deployment()
    assert d["status"]["readyReplicas"] == 3 and d["status"]["updatedReplicas"] == 3
    assert sim.condition("Available")["status"] == "True"
    assert sim.condition("Progressing")["reason"] == "NewReplicaSetAvailable"
    rs = sim.rs("hello:v1")
    assert o.annotations(rs)[ANN_REVISION] == "1"
    assert all(p["metadata"]["labels"][LABEL_TEMPLATE_HASH] for p in sim.pods())
    assert {p["spec"]["nodeName"] for p in sim.pods()} == {"node1"}
    assert len({p["status"]["podIP"] for p in sim.pods()}) == 3


def test_deleting_the_deployment_collects_its_pods(sim):
    start(sim, replicas=3)
    sim.store.delete("Deployment", "default", "web")
    sim.manager.resync()
    sim.settle()
    assert not sim.store.list("ReplicaSet") and not sim.store.list("Pod")
    assert sim.driver.list_pods() == []


# -- the RolloutHook ------------------------------------------------------------------------
class RecordingHook:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def note_complete(self, d: dict, *, revision: int) -> None:
        self.calls.append(("complete", d["metadata"]["name"], revision))

    def check(self, d: dict, *, new_pods: list[dict]) -> bool:
        self.calls.append(("check", d["metadata"]["name"], sorted(p["spec"]["containers"][0]["image"]
                                                                  for p in new_pods)))
        return False


def test_the_hook_is_told_of_a_completed_revision_or_asked_to_judge_the_rollout(sim):
    hook = RecordingHook()
    controller = DeploymentController(store=sim.store, clock=sim.clock, auto_rollback=hook)
    start(sim, replicas=2)
    controller.reconcile(("default", "web"))
    assert hook.calls == [("complete", "web", 1)]
    sim.driver.crashing.add("hello:bad")
    sim.apply(deployment(replicas=2, image="hello:bad", commit="c2"))
    sim.settle()
    hook.calls.clear()
    controller.reconcile(("default", "web"))
    assert hook.calls == [("check", "web", ["hello:bad"])]


def test_without_a_hook_a_failed_rollout_stays_as_kubernetes_leaves_it(sim):
    controller = DeploymentController(store=sim.store, clock=sim.clock)
    assert isinstance(controller.auto_rollback, NoRolloutHook)
    assert controller.auto_rollback.check({}, new_pods=[]) is False


def test_gitops_auto_rollback_is_a_rollout_hook_configured_by_constructor_and_reload(sim):
    hook: RolloutHook = AutoRollback(store=sim.store, clock=sim.clock, default_enabled=True)
    assert isinstance(hook, AutoRollback) and hook.enabled(deployment())
    hook.set_default_enabled(False)
    assert not hook.enabled(deployment())
    assert hook.enabled(auto(deployment()))


def test_auto_rollback_on_progress_deadline_returns_to_last_complete_revision(sim):
    from reconciler.gitops.autorollback import failures, pinned_body
    sim.apply(auto(deployment(replicas=3, surge=1, unavailable=0, pds=30)))
    sim.settle()
    sim.driver.crashing.add("hello:bad")
    bad = auto(deployment(replicas=3, image="hello:bad", surge=1, unavailable=0, pds=30, commit="c2"))
    sim.apply(bad)
    sim.settle()
    for _ in range(5):
        sim.advance(10)
    d = sim.deployment()
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "hello:v1"
    assert d["metadata"]["annotations"]["reconciler.io/rolled-back-from"] == "c2"
    sim.settle()
    assert sim.sizes("hello:v1", "hello:bad") == (3, 0)
    assert [f["commit"] for f in failures(sim.store)] == ["c2"]
    # Git still says hello:bad: the applier keeps the good template (not retried) ...
    body, stale = pinned_body(sim.store, {"metadata": {"name": "web", "namespace": "default"}, "spec": bad["spec"]})
    assert not stale and body["spec"]["template"]["spec"]["containers"][0]["image"] == "hello:v1"
    # ... until the manifest changes: then the pin is stale and Git applies as it is.
    fixed = deployment(replicas=3, image="hello:v2", commit="c3")
    body, stale = pinned_body(sim.store, {"metadata": {"name": "web", "namespace": "default"}, "spec": fixed["spec"]})
    assert stale and body["spec"]["template"]["spec"]["containers"][0]["image"] == "hello:v2"


def test_auto_rollback_is_off_without_the_annotation(sim):
    start(sim, replicas=3, pds=30)
    sim.driver.crashing.add("hello:bad")
    sim.apply(deployment(replicas=3, image="hello:bad", pds=30, commit="c2"))
    sim.settle()
    for _ in range(5):
        sim.advance(10)
    assert sim.deployment()["spec"]["template"]["spec"]["containers"][0]["image"] == "hello:bad"
    assert sim.condition("Progressing")["reason"] == "ProgressDeadlineExceeded"
