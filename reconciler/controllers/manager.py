"""The controller manager: maps store changes to keys and runs one work queue per controller.

Watch → key, never event: a change to a Pod enqueues the pod (for its node agent
or the scheduler) and its owning ReplicaSet; a ReplicaSet change enqueues itself
and its Deployment. Deletions carry only a key, so the owner of every pod and
ReplicaSet seen is remembered to route its deletion too.

With ``threaded=False`` nothing runs in the background: a simulation calls
``run_until_idle()`` and moves its clock, which makes the rollout scenarios
deterministic.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Sequence

from apscheduler.schedulers.background import BackgroundScheduler

from reconciler import objects as o
from reconciler.clock import Clock
from reconciler.controllers.deployment import DeploymentController
from reconciler.controllers.endpoints import EndpointsController
from reconciler.controllers.node import NodeBinding, NodeController
from reconciler.controllers.nodeagent import NodeAgent
from reconciler.controllers.replicaset import ReplicaSetController
from reconciler.controllers.scheduler import Scheduler
from reconciler.controllers.service import ServiceController
from reconciler.workqueue import WorkQueue


class ControllerManager:
    def __init__(self, *, store: Any, clock: Clock, nodes: Sequence[NodeBinding], threaded: bool = True,
                 relist_interval: float = 1.0, heartbeat_interval: float = 5.0, resync_interval: float = 10.0,
                 apply_lock: Any = None, volumes_dir: Path | None = None,
                 service_cidr: str = "127.96.0.0/16") -> None:
        self.store = store
        self.clock = clock
        self._threaded = threaded
        self._intervals = (relist_interval, heartbeat_interval, resync_interval)
        self.deployments = DeploymentController(store=store, clock=clock, apply_lock=apply_lock)
        self.replicasets = ReplicaSetController(store=store, clock=clock)
        self.scheduler = Scheduler(store=store, clock=clock)
        self.services = ServiceController(store=store, clock=clock, service_cidr=service_cidr)
        self.endpoints = EndpointsController(store=store, clock=clock)
        # Set by the daemon: the service proxy's sync, woken by Service/Endpoints/Pod changes.
        self.on_network_change: Any = lambda: None
        self.nodes = NodeController(store=store, clock=clock, nodes=list(nodes))
        self.agents: dict[str, NodeAgent] = {}
        self.queues: dict[str, WorkQueue] = {
            "deployment": WorkQueue(name="deployment", handler=self.deployments.reconcile, workers=2, clock=clock),
            "replicaset": WorkQueue(name="replicaset", handler=self.replicasets.reconcile, workers=2, clock=clock),
            "scheduler": WorkQueue(name="scheduler", handler=self.scheduler.reconcile, workers=1, clock=clock),
            # One worker: allocations of ClusterIPs and nodePorts must not race.
            "service": WorkQueue(name="service", handler=self.services.reconcile, workers=1, clock=clock),
            "endpoints": WorkQueue(name="endpoints", handler=self.endpoints.reconcile, workers=2, clock=clock),
        }
        for binding in nodes:
            assert binding.driver is not None
            agent = NodeAgent(node=binding.name, driver=binding.driver, store=store, clock=clock,
                              volumes_dir=(volumes_dir / binding.name) if volumes_dir else None)
            queue = WorkQueue(name=f"node/{binding.name}", handler=agent.reconcile, workers=8, clock=clock)
            agent.enqueue = queue.add
            self.agents[binding.name] = agent
            self.queues[f"node/{binding.name}"] = queue
        self._pod_owner: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        self._rs_owner: dict[tuple[str, str], str | None] = {}
        self._owner_lock = threading.Lock()
        self._scheduler: BackgroundScheduler | None = None
        store.watch(self._on_change)

    # -- routing ---------------------------------------------------------------------
    def _on_change(self, kind: str, namespace: str, name: str) -> None:
        key = (namespace, name)
        if kind == "Deployment":
            self.queues["deployment"].add(key)
        elif kind == "ReplicaSet":
            self.queues["replicaset"].add(key)
            rs = self.store.get("ReplicaSet", namespace, name)
            with self._owner_lock:
                if rs is not None:
                    self._rs_owner[key] = o.owner_name(rs, "Deployment")
                owner = self._rs_owner.get(key) if rs is not None else self._rs_owner.pop(key, None)
            if owner:
                self.queues["deployment"].add((namespace, owner))
        elif kind == "Pod":
            pod = self.store.get("Pod", namespace, name)
            with self._owner_lock:
                if pod is not None:
                    self._pod_owner[key] = (o.owner_name(pod, "ReplicaSet"), (pod.get("spec") or {}).get("nodeName"))
                    rs_name, node = self._pod_owner[key]
                else:
                    rs_name, node = self._pod_owner.pop(key, (None, None))
            if pod is not None and not node and not o.is_terminating(pod):
                self.queues["scheduler"].add(key)
            if node and f"node/{node}" in self.queues:
                self.queues[f"node/{node}"].add(key)
            if rs_name:
                self.queues["replicaset"].add((namespace, rs_name))
            # Endpoints follow pods; every Service of the namespace looks again (a pod that
            # lost a label or went away must leave the ones that selected it).
            for svc in self.store.list("Service", namespace):
                self.queues["endpoints"].add((namespace, svc["metadata"]["name"]))
            self.on_network_change()
        elif kind == "Service":
            self.queues["service"].add(key)
            self.queues["endpoints"].add(key)
            self.on_network_change()
        elif kind == "Endpoints":
            self.on_network_change()
        elif kind in ("ConfigMap", "Secret"):
            # A Deployment's effective template includes a digest of what it reads.
            for d in self.store.list("Deployment", namespace):
                self.queues["deployment"].add((namespace, d["metadata"]["name"]))
        elif kind == "Node":
            # A node turning Ready may unblock pending pods.
            for pod in self.store.list("Pod"):
                if not (pod.get("spec") or {}).get("nodeName") and not o.is_terminating(pod):
                    self.queues["scheduler"].add((pod["metadata"]["namespace"], pod["metadata"]["name"]))

    def resync(self) -> None:
        """Level-based safety net: look at everything again."""
        for d in self.store.list("Deployment"):
            self.queues["deployment"].add((d["metadata"]["namespace"], d["metadata"]["name"]))
        for rs in self.store.list("ReplicaSet"):
            self.queues["replicaset"].add((rs["metadata"]["namespace"], rs["metadata"]["name"]))
        for svc in self.store.list("Service"):
            self.queues["service"].add((svc["metadata"]["namespace"], svc["metadata"]["name"]))
            self.queues["endpoints"].add((svc["metadata"]["namespace"], svc["metadata"]["name"]))
        for pod in self.store.list("Pod"):
            self._on_change("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"])

    def heartbeat_all(self) -> None:
        for name in self.agents:
            self.nodes.heartbeat(name)

    def relist_all(self) -> None:
        for agent in self.agents.values():
            try:
                agent.relist()
            except Exception:  # an unreachable node is the heartbeat's business
                pass

    # -- running -----------------------------------------------------------------------
    def start(self) -> None:
        self.heartbeat_all()
        for agent in self.agents.values():
            agent.prober.start()
        for queue in self.queues.values():
            queue.start()
        relist, heartbeat, resync = self._intervals
        self._scheduler = BackgroundScheduler(daemon=True)
        self._scheduler.add_job(self.relist_all, "interval", seconds=relist, id="relist", max_instances=1, coalesce=True)
        self._scheduler.add_job(self.heartbeat_all, "interval", seconds=heartbeat, id="heartbeat", max_instances=1, coalesce=True)
        self._scheduler.add_job(self.resync, "interval", seconds=resync, id="resync", max_instances=1, coalesce=True)
        self._scheduler.start()
        self.resync()

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        for queue in self.queues.values():
            queue.stop()
        for agent in self.agents.values():
            agent.prober.stop()

    def run_until_idle(self, *, max_rounds: int = 10_000) -> None:
        """Simulation: process every due item of every queue until all are idle."""
        for _ in range(max_rounds):
            probes = sum(agent.prober.run_due() for agent in self.agents.values())
            if sum(queue.run_until_idle() for queue in self.queues.values()) == 0 and probes == 0:
                return
        raise RuntimeError("controllers did not settle")

    def next_due(self) -> float | None:
        dues = [d for d in (q.next_due() for q in self.queues.values()) if d is not None]
        return min(dues) if dues else None

    def last_progress(self) -> float:
        return min(q.last_progress for q in self.queues.values())
