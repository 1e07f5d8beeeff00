"""A deterministic cluster for controller tests: the real store, the real
controllers and node agent, the fake node driver, and a manual clock.

Invariants are checked on every store write, so a transient state that breaks
them is caught even if a later write repairs it.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

from reconciler.core import objects as o
from reconciler.core.clock import ManualClock
from reconciler.core.keys import ANN_COMMIT
from reconciler.daemon.controlplane import ControlPlane
from reconciler.kubelet.nodestatus import NodeBinding
from reconciler.store.store import Store
from runtime.driver import PodRequest
from runtime.fake import FakeDriver


def settle(manager: ControlPlane, store: Store, *, rounds: int = 50) -> None:
    """Run the controllers and a relist until a whole round writes nothing."""
    for _ in range(rounds):
        manager.run_until_idle()
        before = store.resource_version
        manager.relist_all()
        manager.run_until_idle()
        if store.resource_version == before:
            return
    raise AssertionError("the cluster did not settle")


def apply(store: Store, obj: dict) -> None:
    """What the applier does with a changed manifest: create it, or replace its spec and annotations."""
    live = store.get(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
    if live is None:
        store.put(copy.deepcopy(obj))
        return

    def mutate(cur: dict) -> dict:
        cur["spec"] = copy.deepcopy(obj["spec"])
        cur["metadata"]["annotations"] = {**cur["metadata"].get("annotations", {}),
                                          **(obj["metadata"].get("annotations") or {})}
        return cur

    store.update(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"], mutate)


class CrashingDriver(FakeDriver):
    """Containers of the images in ``crashing`` exit 1 as soon as they start."""

    def __init__(self, *, clock: Callable[[], float]) -> None:
        super().__init__(clock=clock, record_calls=False)
        self.crashing: set[str] = set()

    def _crash_if_needed(self, namespace: str, name: str) -> None:
        for state in self.list_pods():
            if state.namespace == namespace and state.name == name:
                for c in state.containers:
                    if c.image in self.crashing and c.state == "running":
                        self.crash(namespace=namespace, name=name, container=c.name, exit_code=1)

    def start_pod(self, *, namespace: str, name: str) -> None:
        super().start_pod(namespace=namespace, name=name)
        self._crash_if_needed(namespace, name)

    def start_container(self, *, namespace: str, name: str, container: str) -> None:
        super().start_container(namespace=namespace, name=name, container=container)
        self._crash_if_needed(namespace, name)

    def recreate_container(self, request: PodRequest, *, container: str, grace_seconds: int) -> str:
        new_id = super().recreate_container(request, container=container, grace_seconds=grace_seconds)
        self._crash_if_needed(request.namespace, request.name)
        return new_id


def deployment(name: str = "web", *, replicas: int = 10, image: str = "hello:v1", surge: int | str = 1,
               unavailable: int | str = 0, min_ready: int = 0, pds: int = 600, history: int = 10,
               strategy: str = "RollingUpdate", commit: str = "c1") -> dict:
    spec: dict = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"containers": [{"name": "app", "image": image, "imagePullPolicy": "IfNotPresent"}],
                              "restartPolicy": "Always", "terminationGracePeriodSeconds": 30}},
        "minReadySeconds": min_ready,
        "progressDeadlineSeconds": pds,
        "revisionHistoryLimit": history,
        "strategy": {"type": strategy},
    }
    if strategy == "RollingUpdate":
        spec["strategy"]["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default", "annotations": {ANN_COMMIT: commit}},
            "spec": spec}


class Sim:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = ManualClock()
        self.store = Store(tmp_path / "store.db", clock=self.clock.now)
        self.driver = CrashingDriver(clock=self.clock.now)
        self.manager = ControlPlane(
            store=self.store, clock=self.clock, threaded=False,
            nodes=[NodeBinding(name="node1", url="fake://node1", pod_cidr="127.244.0.0/24", driver=self.driver)])
        self.manager.heartbeat_all()
        self.checks: list[Callable[[], None]] = []
        self.store.watch(lambda *_: [check() for check in self.checks])

    # -- driving ------------------------------------------------------------------------
    def settle(self, *, rounds: int = 50) -> None:
        settle(self.manager, self.store, rounds=rounds)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.settle()

    def apply(self, obj: dict) -> None:
        apply(self.store, obj)

    # -- observing -----------------------------------------------------------------------
    def pods(self, *, image: str | None = None) -> list[dict]:
        pods = self.store.list("Pod", "default")
        if image is not None:
            pods = [p for p in pods if p["spec"]["containers"][0]["image"] == image]
        return pods

    def live(self) -> int:
        """Pods whose containers may be running: every pod object, terminating ones too."""
        return len(self.store.list("Pod"))

    def available(self, *, min_ready: int = 0) -> int:
        return sum(1 for p in self.store.list("Pod") if o.pod_is_active(p)
                   and o.pod_is_available(p, min_ready_seconds=min_ready, now=self.clock.now()))

    def rs(self, image: str) -> dict:
        for rs in self.store.list("ReplicaSet", "default"):
            if rs["spec"]["template"]["spec"]["containers"][0]["image"] == image:
                return rs
        raise AssertionError(f"no ReplicaSet for {image}")

    def sizes(self, *images: str) -> tuple[int, ...]:
        return tuple(self.rs(i)["spec"]["replicas"] for i in images)

    def deployment(self, name: str = "web") -> dict:
        d = self.store.get("Deployment", "default", name)
        assert d is not None
        return d

    def condition(self, ctype: str, name: str = "web") -> dict:
        return o.get_condition(self.deployment(name).get("status") or {}, ctype) or {}
