"""The control plane's composition: every controller, the scheduler and the node kubelets on one manager.

This is the one place a controller is wired in: constructed with what it needs
(wiring by constructor) and registered with the manager, which routes store changes
to it by its own ``watches``. The daemon builds one ``ControlPlane``; simulations and
benchmarks build the same one with fake drivers and ``threaded=False``.

With several daemons on one etcd store (``leadership.py``) the two halves run apart: every
daemon runs its nodes' kubelets (``controllers=False``), and only the leader runs the
controllers and the scheduler (a second ``ControlPlane`` with no nodes, built afresh each time
it becomes the leader).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from reconciler.controllers.deployment.controller import DeploymentController
from reconciler.controllers.endpoints import EndpointsController
from reconciler.controllers.manager import ControllerManager
from reconciler.controllers.nodelifecycle import DEFAULT_TOLERATION, NodeLifecycleController
from reconciler.controllers.replicaset import ReplicaSetController
from reconciler.controllers.service.controller import ServiceController
from reconciler.core.clock import Clock
from reconciler.core.workqueue import DoneHook, Result, WorkQueue
from reconciler.daemon.hostwide import HostSync
from reconciler.gitops.autorollback import AutoRollback
from reconciler.kubelet import drift
from reconciler.kubelet.agent import NodeAgent
from reconciler.kubelet.drift import OnDrift
from reconciler.kubelet.nodestatus import NodeBinding, NodeController
from reconciler.kubelet.routes import PodRoutes, sync_logged
from reconciler.kubelet.runner import WATCHER_JOIN, Kubelet
from reconciler.scheduler.scheduler import Scheduler


class ControlPlane:
    def __init__(self, *, store: Any, clock: Clock, nodes: Sequence[NodeBinding], threaded: bool = True,
                 relist_interval: float | None = None, heartbeat_interval: float = 5.0,
                 resync_interval: float = 10.0, apply_lock: Any = None, volumes_dir: Path | None = None,
                 service_cidr: str = "10.96.0.0/16", node_toleration: float = DEFAULT_TOLERATION,
                 auto_rollback: bool = False,
                 still_serving: Callable[[str], bool] | None = None, on_drift: OnDrift | None = None,
                 queue_observer: Callable[[str], DoneHook] | None = None,
                 pod_routes: PodRoutes | None = None, controllers: bool = True, prune_nodes: bool = True,
                 node_report_every: float | None = None) -> None:
        self.store = store
        self.clock = clock
        self._threaded = threaded
        # Nodes absent from the config are pruned only where the config is the whole list of nodes.
        self._prune_nodes = prune_nodes and controllers
        self.manager = manager = ControllerManager(store=store, clock=clock, threaded=threaded,
                                                   resync_interval=resync_interval, queue_observer=queue_observer)
        reader = manager.reader  # tracked controllers read through it: their reads decide their resyncs
        # The automatic rollback reads through the tracker too: its pins decide a Deployment's resync.
        self.auto_rollback = AutoRollback(store=reader, clock=clock, default_enabled=auto_rollback)
        self.deployments = DeploymentController(store=reader, clock=clock, apply_lock=apply_lock,
                                                auto_rollback=self.auto_rollback)
        self.replicasets = ReplicaSetController(store=reader, clock=clock)
        self.scheduler = Scheduler(store=reader, clock=clock)
        self.services = ServiceController(store=reader, clock=clock, service_cidr=service_cidr)
        self.endpoints = EndpointsController(store=reader, clock=clock)
        self.nodes = (NodeController(store=store, clock=clock, nodes=list(nodes)) if node_report_every is None
                      else NodeController(store=store, clock=clock, nodes=list(nodes), report_every=node_report_every))
        self.lifecycle = NodeLifecycleController(store=reader, clock=clock, nodes=[n.name for n in nodes],
                                                 toleration=node_toleration, on_pod_removed=self._forget_pod)
        # The scheduler's per-node totals must be current before any placement.
        manager.observe("Pod", self.scheduler.observe)
        # And the lifecycle's NodeLost pods, so a Ready node's pass need not read every pod of it.
        manager.observe("Pod", self.lifecycle.observe)
        for controller in (self.deployments, self.replicasets, self.scheduler, self.services, self.endpoints,
                           self.lifecycle) if controllers else ():
            manager.add(controller)
        self.agents: dict[str, NodeAgent] = {}
        self.kubelets: dict[str, Kubelet] = {}
        for binding in nodes:
            assert binding.driver is not None
            queue_name = f"node/{binding.name}"
            agent = NodeAgent(node=binding.name, driver=binding.driver, store=store, clock=clock,
                              volumes_dir=(volumes_dir / binding.name) if volumes_dir else None,
                              # The agent's queue is registered just below, from the kubelet that wraps it.
                              enqueue=partial(_add_to, manager.queues, queue_name),
                              still_serving=still_serving, on_drift=on_drift or drift.ignore)
            kubelet = Kubelet(agent=agent, heartbeat=self.nodes.heartbeat, usable=self.lifecycle.usable,
                              relist_interval=relist_interval)
            manager.add(kubelet, tracked=False)  # a kubelet's safety net is its relist, not reads
            self.agents[binding.name] = agent
            self.kubelets[binding.name] = kubelet
            # Two jobs per node, each in its own thread, so a slow node delays only itself.
            manager.every(f"relist/{binding.name}", kubelet.relist_interval, kubelet.poll)
            manager.every(f"heartbeat/{binding.name}", heartbeat_interval, kubelet.heartbeat)
        if pod_routes is not None and nodes:
            # This host is a node: route the other nodes' pod CIDRs via their addresses (host-gw),
            # as every `reconciler node` does for its own host.
            local = frozenset(n.name for n in nodes)
            self._pod_routes = pod_routes
            manager.add(HostSync(name="routes", handler=lambda _key: self._sync_routes(local), kinds=("Node",)),
                        tracked=False)

    def _sync_routes(self, local: frozenset[str]) -> Result | None:
        retry = sync_logged(self._pod_routes, self.store.list("Node"), me=local)
        return Result(requeue_after=retry) if retry is not None else None

    # -- the manager's surface -----------------------------------------------------------------
    @property
    def queues(self) -> dict[str, WorkQueue]:
        return self.manager.queues

    @property
    def _clean(self) -> dict[str, dict[Hashable, Any]]:  # tests look at the resync records
        return self.manager._clean

    @property
    def guard_interval(self) -> float:
        return self.manager.guard_interval

    @property
    def relist_interval(self) -> float:
        return next(iter(self.kubelets.values())).relist_interval if self.kubelets else 0.0

    def resync(self, *, full: bool | None = None) -> None:
        self.manager.resync(full=full)

    def next_due(self) -> float | None:
        return self.manager.next_due()

    def last_progress(self) -> float:
        return self.manager.last_progress()

    def run_until_idle(self, *, max_rounds: int = 10_000) -> None:
        """Simulation: every due item of every queue and every due probe, until all are idle."""
        self.manager.run_until_idle(extra=lambda: sum(a.prober.run_due() for a in self.agents.values()),
                                    max_rounds=max_rounds)

    # -- nodes -------------------------------------------------------------------------------
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
        self.kubelets[name].relist()

    def relist_all(self) -> None:
        for kubelet in self.kubelets.values():
            kubelet.relist()

    def start_watchers(self) -> None:
        for kubelet in self.kubelets.values():
            kubelet.start_watcher()

    def stop_watchers(self, *, timeout: float = WATCHER_JOIN) -> None:
        deadline = time.monotonic() + timeout  # real time: the clock may be a simulation's
        for kubelet in self.kubelets.values():
            kubelet.stop_watcher(deadline=deadline)

    # -- running -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._prune_nodes:
            self.nodes.prune_unconfigured()
        self.heartbeat_all()
        for agent in self.agents.values():
            agent.prober.start()
        self.manager.start()
        self.start_watchers()

    def close(self) -> None:
        """Detach from the store; the daemon replaces a halted control plane on a config reload."""
        self.manager.close()

    def stop(self) -> None:
        self.manager.stop()
        self.stop_watchers()
        for agent in self.agents.values():
            agent.prober.stop()



def _add_to(queues: dict[str, WorkQueue], name: str, key: Hashable) -> None:
    queues[name].add(key)
