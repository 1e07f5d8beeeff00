"""The node agent's teardown order, on the fake driver: the Pod object goes once its
containers have stopped and before the engine pod is removed (so a rolling update's
next step does not wait for the engine's clean-up), a crash between the two leaves an
orphan the agent removes, and the ordinary removal is never counted as drift.
"""
from __future__ import annotations

import copy
import threading
import time

from reconciler.core.clock import ManualClock
from reconciler.core.keys import ANN_POD_IP, LABEL_NODE
from reconciler.daemon.controlplane import ControlPlane
from reconciler.kubelet.nodestatus import NodeBinding
from reconciler.store.store import Store
from runtime.driver import DriverError, PodRequest
from runtime.fake import FakeDriver
from tests.harness.sim import Sim, apply, deployment, settle


def test_the_object_goes_after_the_stop_and_before_the_removal(tmp_path):
    sim = Sim(tmp_path)
    sim.apply(deployment(replicas=2, image="hello:v1"))
    sim.settle()
    names = {p["metadata"]["name"] for p in sim.pods()}
    seen: dict[str, list[str] | None] = {}

    def on_change(kind: str, namespace: str, name: str) -> None:
        # At the moment the object goes: what does the engine hold of that pod?
        if kind == "Pod" and name in names and sim.store.get("Pod", namespace, name) is None:
            states = [p for p in sim.driver.list_pods() if p.name == name]
            seen[name] = [c.state for c in states[0].containers] if states else None

    sim.store.watch(on_change)
    sim.apply(deployment(replicas=0, image="hello:v1"))
    sim.settle()
    assert sim.pods() == []
    assert set(seen) == names
    for name, states in seen.items():
        assert states is not None, f"{name}: the engine pod was removed before the object"
        assert states and all(s == "terminated" for s in states), f"{name}: still running when deleted: {states}"
    assert not [p for p in sim.driver.list_pods() if p.name in names]
    sim.store.close()


def test_a_removal_that_fails_after_the_object_went_is_finished_as_an_orphan(tmp_path, monkeypatch):
    sim = Sim(tmp_path)
    sim.apply(deployment(replicas=1, image="hello:v1"))
    sim.settle()
    [pod] = sim.pods()
    name = pod["metadata"]["name"]
    real_remove = sim.driver.remove_pod
    failures = []

    def remove_once_failing(*, namespace: str, name: str) -> None:
        if not failures:
            failures.append(name)
            raise DriverError("the engine went away mid-teardown")
        real_remove(namespace=namespace, name=name)

    monkeypatch.setattr(sim.driver, "remove_pod", remove_once_failing)
    sim.apply(deployment(replicas=0, image="hello:v1"))
    sim.manager.run_until_idle()
    assert failures == [name]
    assert sim.store.get("Pod", "default", name) is None
    sim.advance(1.0)  # the failed item's retry (and a relist) finish the removal
    assert not [p for p in sim.driver.list_pods() if p.name == name]
    sim.store.close()


def test_an_ordinary_removal_is_not_counted_as_drift(tmp_path):
    clock = ManualClock()
    store = Store(tmp_path / "store.db", clock=clock.now)
    drift: list[str] = []
    fake = FakeDriver(clock=clock.now, record_calls=True)
    manager = ControlPlane(store=store, clock=clock, threaded=False,
                           nodes=[NodeBinding(name="node1", url="fake://node1", pod_cidr="127.244.0.0/24",
                                              driver=fake)], on_drift=drift.append)
    manager.heartbeat_all()
    apply(store, deployment(replicas=2, image="hello:v1"))
    settle(manager, store)
    assert len(store.list("Pod")) == 2
    apply(store, deployment(replicas=0, image="hello:v1"))
    settle(manager, store)
    assert store.list("Pod") == [] and fake.list_pods() == []
    assert "stray_pod_removed" not in drift
    # Nor did telling it cost a listing of the whole engine per removed pod.
    removals = fake.calls_to("remove_pod")
    assert len(removals) == 2
    store.close()


def test_an_orphan_is_drift_only_while_the_engine_holds_it(tmp_path):
    """A relist racing a deletion can hand the worker the view of a pod removed meanwhile:
    its second teardown corrects nothing, so it is not counted; a real stray is."""
    sim = Sim(tmp_path)
    agent = sim.manager.agents["node1"]
    drift: list[str] = []
    agent.on_drift = drift.append
    for name in ("gone", "stray"):
        sim.driver.create_pod(PodRequest(namespace="default", name=name, uid=f"u-{name}", pod_ip="127.244.0.250",
                                         containers=(), labels={LABEL_NODE: "node1"}))
    agent.relist()  # the view holds both
    sim.driver.remove_pod(namespace="default", name="gone")  # removed before the worker looks
    agent.reconcile(("default", "gone"))
    assert drift == []
    agent.reconcile(("default", "stray"))
    assert drift == ["stray_pod_removed"] and sim.driver.list_pods() == []
    sim.store.close()


def test_when_the_stop_fails_the_object_waits_for_the_removal(tmp_path, monkeypatch):
    """Only a successful stop lets the object go first: otherwise the containers may still run."""
    sim = Sim(tmp_path)
    sim.apply(deployment(replicas=1, image="hello:v1"))
    sim.settle()
    [pod] = sim.pods()
    name = pod["metadata"]["name"]
    seen: list[list[str] | None] = []

    def refuse_stop(*, namespace: str, name: str, container: str, grace_seconds: int) -> None:
        raise DriverError("the engine refused to stop it")

    def on_change(kind: str, namespace: str, changed: str) -> None:
        if kind == "Pod" and changed == name and sim.store.get("Pod", namespace, changed) is None:
            seen.append([p.name for p in sim.driver.list_pods() if p.name == name] or None)

    monkeypatch.setattr(sim.driver, "stop_container", refuse_stop)
    sim.store.watch(on_change)
    sim.apply(deployment(replicas=0, image="hello:v1"))
    sim.settle()
    assert seen == [None], "the object went while the engine still held the pod"
    assert sim.pods() == [] and not [p for p in sim.driver.list_pods() if p.name == name]
    sim.store.close()


def test_a_new_pod_with_the_ip_of_one_being_removed_waits_for_the_removal(tmp_path, monkeypatch):
    """The object goes before the sandbox does, so the scheduler may give its IP to a new pod
    while the old sandbox still holds it in the engine's IPAM: that pod's create waits until
    the old engine pod is removed (a second holder is refused, and the new pod would fail)."""
    sim = Sim(tmp_path)
    sim.apply(deployment(replicas=1, image="hello:v1"))
    sim.settle()
    [old] = sim.pods()
    ip = old["metadata"]["annotations"][ANN_POD_IP]
    agent = sim.manager.agents["node1"]
    order: list[str] = []
    removing = threading.Event()
    real_remove, real_create = sim.driver.remove_pod, sim.driver.create_pod

    def slow_remove(*, namespace: str, name: str) -> None:
        removing.set()
        # Hold the removal until the new pod's create waits on it (or give up after a deadline:
        # then the create went ahead, and the order below says so).
        deadline = time.monotonic() + 5.0
        while not agent.teardown.releasing.waiting(ip) and time.monotonic() < deadline:
            time.sleep(0.005)
        order.append(f"removed {name}")
        real_remove(namespace=namespace, name=name)

    def recording_create(request: PodRequest):
        order.append(f"create {request.name} at {request.pod_ip}")
        return real_create(request)

    monkeypatch.setattr(sim.driver, "remove_pod", slow_remove)
    monkeypatch.setattr(sim.driver, "create_pod", recording_create)
    old_name = old["metadata"]["name"]

    def mark(cur: dict) -> dict:
        cur["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        cur["metadata"]["deletionGracePeriodSeconds"] = 1
        return cur

    sim.store.update("Pod", "default", old_name, mark)
    tearing = threading.Thread(target=agent.reconcile, args=(("default", old_name),))
    tearing.start()
    assert removing.wait(5.0), "the old pod's removal never started"
    assert sim.store.get("Pod", "default", old_name) is None  # the object went first
    new = copy.deepcopy(old)
    new["metadata"] = {k: v for k, v in old["metadata"].items() if k not in ("uid", "resourceVersion")}
    new["metadata"]["name"] = "web-new"
    new.pop("status", None)
    sim.store.put(new)
    starting = threading.Thread(target=agent.reconcile, args=(("default", "web-new"),))
    starting.start()
    tearing.join(10)
    starting.join(10)
    assert order == [f"removed {old_name}", f"create web-new at {ip}"]
    assert {p.name for p in sim.driver.list_pods()} == {"web-new"}
    sim.store.close()
