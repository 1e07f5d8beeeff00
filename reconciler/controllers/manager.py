"""The controller manager: maps store changes to keys and runs one work queue per controller.

Watch → key, never event: a change to a Pod enqueues the pod (for its node agent
or the scheduler) and its owning ReplicaSet; a ReplicaSet change enqueues itself
and its Deployment. Deletions carry only a key, so the owner of every pod and
ReplicaSet seen is remembered to route its deletion too.

Nodes: each node has its own heartbeat and relist jobs, so a node that hangs
(an ssh host gone silent) delays nobody else. Each node also has a watcher
thread on its engine's event stream, which hands each event to the node agent
(a key to look at at once); the relist stays as the safety net, at the
interval ``relist_interval`` (default 2 s; the config's ``relistInterval``).

A node agent's work items are dropped while its Node is NotReady: the agent's
view of that engine is stale, and writing status from it would undo what the
node lifecycle controller says about the node's pods (Unknown, not ready). Nothing is lost by dropping: the
agent's relist, once the engine answers again, finds every difference anew.

With ``threaded=False`` nothing runs in the background: a simulation calls
``run_until_idle()`` and moves its clock, which makes the rollout scenarios
deterministic (a simulation may still ``start_watchers()``: the fake driver
delivers its events synchronously, in the thread that made the change).
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

from apscheduler.executors.pool import ThreadPoolExecutor as JobExecutor
from apscheduler.schedulers.background import BackgroundScheduler
import structlog

from reconciler import objects as o
from reconciler.clock import Clock
from reconciler.controllers.deployment import DeploymentController
from reconciler.controllers.endpoints import EndpointsController
from reconciler.controllers.node import NodeBinding, NodeController, node_is_ready
from reconciler.controllers.nodeagent import NodeAgent
from reconciler.controllers.nodelifecycle import DEFAULT_TOLERATION, NodeLifecycleController
from reconciler.controllers.replicaset import ReplicaSetController
from reconciler.controllers.scheduler import Scheduler
from reconciler.controllers.service import ServiceController
from reconciler.workqueue import WorkQueue
from runtime.driver import EngineEvent, EventsUnsupported

log = structlog.get_logger("manager")

DEFAULT_RELIST_INTERVAL = 2.0
WATCHER_JOIN = 3.0  # seconds stop() waits for watcher threads (a watch honours stop at once, or
# within its read timeout where the stream's socket cannot be shut down)


class ControllerManager:
    def __init__(self, *, store: Any, clock: Clock, nodes: Sequence[NodeBinding], threaded: bool = True,
                 relist_interval: float | None = None, heartbeat_interval: float = 5.0,
                 resync_interval: float = 10.0,
                 apply_lock: Any = None, volumes_dir: Path | None = None,
                 service_cidr: str = "127.96.0.0/16", node_toleration: float = DEFAULT_TOLERATION) -> None:
        self.store = store
        self.clock = clock
        self._threaded = threaded
        self._intervals = (relist_interval or DEFAULT_RELIST_INTERVAL, heartbeat_interval, resync_interval)
        self._watch_stop = threading.Event()
        self._watchers: list[threading.Thread] = []
        self.deployments = DeploymentController(store=store, clock=clock, apply_lock=apply_lock)
        self.replicasets = ReplicaSetController(store=store, clock=clock)
        self.scheduler = Scheduler(store=store, clock=clock)
        self.services = ServiceController(store=store, clock=clock, service_cidr=service_cidr)
        self.endpoints = EndpointsController(store=store, clock=clock)
        # Set by the daemon: the service proxy's sync, woken by Service/Endpoints/Pod changes.
        self.on_network_change: Any = lambda: None
        self.nodes = NodeController(store=store, clock=clock, nodes=list(nodes))
        self.lifecycle = NodeLifecycleController(store=store, clock=clock, nodes=[n.name for n in nodes],
                                                 toleration=node_toleration, on_pod_removed=self._forget_pod)
        self.agents: dict[str, NodeAgent] = {}
        self.queues: dict[str, WorkQueue] = {
            "deployment": WorkQueue(name="deployment", handler=self.deployments.reconcile, workers=2, clock=clock),
            "replicaset": WorkQueue(name="replicaset", handler=self.replicasets.reconcile, workers=2, clock=clock),
            "scheduler": WorkQueue(name="scheduler", handler=self.scheduler.reconcile, workers=1, clock=clock),
            # One worker: allocations of ClusterIPs and nodePorts must not race.
            "service": WorkQueue(name="service", handler=self.services.reconcile, workers=1, clock=clock),
            "endpoints": WorkQueue(name="endpoints", handler=self.endpoints.reconcile, workers=2, clock=clock),
            "nodelifecycle": WorkQueue(name="nodelifecycle", handler=self.lifecycle.reconcile, workers=1, clock=clock),
        }
        for binding in nodes:
            assert binding.driver is not None
            agent = NodeAgent(node=binding.name, driver=binding.driver, store=store, clock=clock,
                              volumes_dir=(volumes_dir / binding.name) if volumes_dir else None)
            queue = WorkQueue(name=f"node/{binding.name}", handler=self._unless_not_ready(binding.name, agent.reconcile),
                              workers=8, clock=clock)
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
            if pod is not None and not node:
                self.queues["scheduler"].add(key)  # to bind it, or to delete it if it is marked for deletion
            if node and f"node/{node}" in self.queues:
                self.queues[f"node/{node}"].add(key)
            if pod is not None and node and not self._node_usable(node):
                # A pod on a lost (or unconfigured) node: its status is the lifecycle controller's.
                self.queues["nodelifecycle"].add(node)
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
            self.queues["nodelifecycle"].add(name)
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
        for name in self.nodes.names:
            self.queues["nodelifecycle"].add(name)

    # -- nodes -------------------------------------------------------------------------
    def _node_usable(self, name: str) -> bool:
        """False for a node that is not configured, or whose Node says NotReady."""
        if name not in self.nodes.names:
            return False
        node = self.store.get("Node", "", name)
        return node is None or node_is_ready(node)

    def _unless_not_ready(self, name: str, handler: Callable[[Hashable], Any]) -> Callable[[Hashable], Any]:
        def run(key: Hashable) -> Any:
            if not self._node_usable(name):
                return None  # stale engine view; the relist finds this again once the node answers
            return handler(key)

        return run

    def _forget_pod(self, node: str, key: tuple[str, str]) -> None:
        agent = self.agents.get(node)
        if agent is not None:
            agent.prober.forget_pod(key)

    def heartbeat(self, name: str) -> None:
        self.nodes.heartbeat(name)

    def heartbeat_all(self) -> None:
        names = sorted(self.agents)
        if not self._threaded or len(names) < 2:
            for name in names:
                self.nodes.heartbeat(name)
            return
        # In parallel: one silent node must not make the others miss their heartbeats.
        with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="heartbeat") as pool:
            list(pool.map(self.nodes.heartbeat, names))

    def relist(self, name: str) -> None:
        try:
            self.agents[name].relist()
        except Exception:  # an unreachable node is the heartbeat's business
            pass

    def relist_all(self) -> None:
        for name in self.agents:
            self.relist(name)

    @property
    def relist_interval(self) -> float:
        return self._intervals[0]

    # -- engine events -------------------------------------------------------------------
    def start_watchers(self) -> None:
        """One thread per node on its engine's event stream (a no-op if they run already)."""
        if self._watchers:
            return
        self._watch_stop = threading.Event()
        for name in self.agents:
            thread = threading.Thread(target=self._watch, args=(name, self._watch_stop), name=f"watch/{name}",
                                      daemon=True)
            thread.start()
            self._watchers.append(thread)

    def stop_watchers(self, *, timeout: float = WATCHER_JOIN) -> None:
        """Tell every watcher to stop; wait (within ``timeout`` in all) for them to end."""
        self._watch_stop.set()
        deadline = time.monotonic() + timeout  # real time: the manager's clock may be a simulation's
        for thread in self._watchers:
            thread.join(timeout=max(deadline - time.monotonic(), 0.0))
        self._watchers = []

    def _watch(self, name: str, stop: threading.Event) -> None:
        agent = self.agents[name]

        def on_event(event: EngineEvent) -> None:
            # The watcher must outlive any one bad event: a failure here only costs
            # the relist's latency for that pod.
            try:
                agent.on_engine_event(event)
            except Exception:
                log.exception("engine event handling failed", node=name, pod=f"{event.namespace}/{event.name}")

        try:
            agent.driver.watch(on_event=on_event, stop=stop, on_status=agent.on_watch_status)
        except EventsUnsupported as exc:
            log.info("engine events unavailable; relying on relists", node=name, reason=str(exc),
                     relist_interval=self.relist_interval, action="watch")
        except Exception as exc:  # a watcher bug must not take the daemon down; relists go on
            log.warning("engine event watcher ended; relying on relists", node=name,
                        error=f"{type(exc).__name__}: {exc}", relist_interval=self.relist_interval, action="watch")

    # -- running -----------------------------------------------------------------------
    def start(self) -> None:
        self.nodes.prune_unconfigured()
        self.heartbeat_all()
        for agent in self.agents.values():
            agent.prober.start()
        for queue in self.queues.values():
            queue.start()
        relist, heartbeat, resync = self._intervals
        # Two jobs per node plus the resync, each in its own thread, so a slow node delays only itself.
        self._scheduler = BackgroundScheduler(daemon=True,
                                              executors={"default": JobExecutor(max(10, 2 * len(self.agents) + 2))})
        for name in self.agents:
            self._scheduler.add_job(partial(self.relist, name), "interval", seconds=relist, id=f"relist/{name}",
                                    max_instances=1, coalesce=True)
            self._scheduler.add_job(partial(self.heartbeat, name), "interval", seconds=heartbeat,
                                    id=f"heartbeat/{name}", max_instances=1, coalesce=True)
        self._scheduler.add_job(self.resync, "interval", seconds=resync, id="resync", max_instances=1, coalesce=True)
        self._scheduler.start()
        self.start_watchers()
        self.resync()

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        self.stop_watchers()
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
