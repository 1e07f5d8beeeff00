"""A deterministic cluster of several fake nodes: the real store, controllers,
scheduler, node agents and node lifecycle controller, one fake driver per node,
and a manual clock.

Time only moves through ``advance()``, which steps the clock one second at a
time and sends heartbeats every ``HEARTBEAT`` seconds, as the daemon's jobs
would; after each step everything runs until nothing changes (``settle``).
A node dies with ``kill()`` (its engine stops answering and, unless the host
is only cut off, its containers stop too) and returns with ``revive()``.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from reconciler.controllers.nodelifecycle import DEFAULT_TOLERATION
from reconciler.core import objects as o
from reconciler.core.clock import ManualClock
from reconciler.daemon.controlplane import ControlPlane
from reconciler.kubelet.nodestatus import NodeBinding
from reconciler.store.store import Store
from runtime.fake import FakeDriver
from tests.harness.sim import apply, settle

HEARTBEAT = 5.0


def replicaset(name: str = "web", *, replicas: int = 6, image: str = "hello:v1", cpu: str | None = None,
               memory: str | None = None, node_selector: dict[str, str] | None = None) -> dict:
    """A ReplicaSet (no Deployment: the scheduler and node tests need no rollouts)."""
    container: dict = {"name": "app", "image": image, "imagePullPolicy": "IfNotPresent",
                       "ports": [{"name": "http", "containerPort": 8080}]}
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    if requests:
        container["resources"] = {"requests": requests}
    spec: dict = {"containers": [container], "restartPolicy": "Always", "terminationGracePeriodSeconds": 5}
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "default", "annotations": {}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def service(name: str = "web") -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "ClusterIP", "selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}


class MultiSim:
    def __init__(self, tmp_path: Path, *, nodes: int | list[str] = 2, toleration: float = DEFAULT_TOLERATION,
                 cpus: int | dict[str, int] = 4, memory_bytes: int | dict[str, int] = 8 << 30,
                 labels: dict[str, dict[str, str]] | None = None, pod_cidrs: dict[str, str] | None = None,
                 store: Store | None = None, clock: ManualClock | None = None,
                 drivers: dict[str, FakeDriver] | None = None) -> None:
        names = [f"node{i + 1}" for i in range(nodes)] if isinstance(nodes, int) else list(nodes)
        self.tmp_path = tmp_path
        self.clock = clock or ManualClock()
        self.store = store or Store(tmp_path / "store.db", clock=self.clock.now)
        self.drivers: dict[str, FakeDriver] = dict(drivers or {})
        bindings = []
        for index, name in enumerate(names):
            if name not in self.drivers:
                self.drivers[name] = FakeDriver(
                    hostname=f"host-{name}", clock=self.clock.now, record_calls=False,
                    cpus=cpus[name] if isinstance(cpus, dict) else cpus,
                    memory_bytes=memory_bytes[name] if isinstance(memory_bytes, dict) else memory_bytes)
            bindings.append(NodeBinding(name=name, url=f"fake://{name}",
                                        pod_cidr=(pod_cidrs or {}).get(name, f"127.244.{index}.0/24"),
                                        labels=dict((labels or {}).get(name, {})), driver=self.drivers[name]))
        self.names = names
        self.manager = ControlPlane(store=self.store, clock=self.clock, nodes=bindings, threaded=False,
                                         node_toleration=toleration, volumes_dir=tmp_path / "volumes")
        self.manager.nodes.prune_unconfigured()
        self.manager.heartbeat_all()
        self._next_heartbeat = self.clock.now() + HEARTBEAT
        self.checks: list[Callable[[], None]] = []
        self.store.watch(lambda *_: [check() for check in self.checks])
        # As the daemon's start: look at everything once (a store from an earlier run may hold work).
        self.manager.resync()
        self.settle()

    # -- driving ------------------------------------------------------------------------
    def settle(self, *, rounds: int = 50) -> None:
        settle(self.manager, self.store, rounds=rounds)

    def advance(self, seconds: float) -> None:
        """Move time on in steps of at most a second, with heartbeats when they are due."""
        remaining = seconds
        while remaining > 1e-9:
            step = min(1.0, remaining)
            self.clock.advance(step)
            remaining -= step
            if self.clock.now() >= self._next_heartbeat - 1e-9:
                self.manager.heartbeat_all()
                self._next_heartbeat += HEARTBEAT
            self.settle()

    def advance_until(self, predicate: Callable[[], object], *, limit: float, what: str) -> float:
        """Advance second by second until ``predicate()``; returns the simulated seconds it took."""
        started = self.clock.now()
        while not predicate():
            if self.clock.now() - started > limit:
                raise AssertionError(f"not within {limit}s of simulated time: {what}")
            self.advance(1.0)
        return self.clock.now() - started

    def apply(self, obj: dict) -> None:
        apply(self.store, obj)
        self.settle()

    def scale(self, name: str, replicas: int) -> None:
        def mutate(cur: dict) -> dict:
            cur["spec"]["replicas"] = replicas
            return cur
        self.store.update("ReplicaSet", "default", name, mutate)
        self.settle()

    def kill(self, node: str, *, containers_die: bool = True) -> None:
        """The node's engine stops answering; with ``containers_die`` its containers stop too (the
        host died) rather than keep running (the host is only cut off from the daemon)."""
        driver = self.drivers[node]
        if containers_die:
            for state in driver.list_pods():
                for c in state.containers:
                    if c.state == "running":
                        driver.crash(namespace=state.namespace, name=state.name, container=c.name, exit_code=137)
        driver.set_reachable(False)

    def revive(self, node: str) -> None:
        self.drivers[node].set_reachable(True)

    # -- observing -----------------------------------------------------------------------
    def node(self, name: str) -> dict:
        node = self.store.get("Node", "", name)
        assert node is not None, f"no Node {name}"
        return node

    def ready(self, name: str) -> bool:
        cond = o.get_condition(self.node(name).get("status") or {}, "Ready")
        return bool(cond and cond.get("status") == "True")

    def pods(self, app: str | None = None) -> list[dict]:
        pods = self.store.list("Pod", "default")
        return [p for p in pods if app is None or o.labels(p).get("app") == app]

    def placement(self, app: str | None = None) -> dict[str, int]:
        """Pods per node (unscheduled ones under "")."""
        counts: dict[str, int] = {}
        for pod in self.pods(app):
            node = (pod.get("spec") or {}).get("nodeName") or ""
            counts[node] = counts.get(node, 0) + 1
        return counts

    def running_ready(self, app: str | None = None) -> list[dict]:
        return [p for p in self.pods(app) if (p.get("status") or {}).get("phase") == "Running" and o.pod_is_ready(p)
                and not o.is_terminating(p)]

    def engine_pods(self, node: str) -> list[tuple[str, str]]:
        """What the node's engine holds, whatever the store says (the node must answer)."""
        return sorted((s.namespace, s.name) for s in self.drivers[node].list_pods())

    def events(self, name: str, *, kind: str = "Pod") -> list[dict]:
        return self.store.events(kind=kind, name=name)

    def endpoint_ips(self, name: str = "web") -> set[str]:
        ep = self.store.get("Endpoints", "default", name) or {}
        return {a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []}
