"""The controller manager: maps store changes to keys and runs one work queue per controller.

Watch → key, never event: a change to a Pod enqueues the pod (for its node agent
or the scheduler) and its owning ReplicaSet; a ReplicaSet change enqueues itself
and its Deployment. Deletions carry only a key, so the owner of every pod and
ReplicaSet seen is remembered to route its deletion too.

Nodes: each node has its own heartbeat and relist jobs, so a node that hangs
(an ssh host gone silent) delays nobody else. Each node also has a watcher
thread on its engine's event stream, which hands each event to the node agent
(a key to look at at once); the relist stays as the safety net, at the
interval ``relist_interval`` (default 5 s; the config's ``relistInterval``).

A node agent's work items are dropped while its Node is NotReady: the agent's
view of that engine is stale, and writing status from it would undo what the
node lifecycle controller says about the node's pods (Unknown, not ready). Nothing is lost by dropping: the
agent's relist, once the engine answers again, finds every difference anew.

Resync without redoing (docs/performance.md, fixes 6 and 7): every controller reads
the store through a ``_ReadTracking`` proxy that notes, per reconcile, what it read —
objects by key, and the lookups it made (a namespace list, the pods of an owner, the
pods of a node) as scopes — and the manager's own watch keeps, per object and per
scope, the sequence number of its last change. A reconcile that ended cleanly (no
error, no requeue) is remembered with its reads; a later ``resync()`` enqueues a key
only when something it read has changed since (or it was never reconciled). The
store's watchers cannot miss a write, so this loses nothing the full pass would have
found from the store; engine drift is the relist's and the event stream's business,
so a resync no longer routes pods to their node agents either (only the first one, at
start, does: the agents then compare every pod once). A real full pass still runs
every ``GUARD_INTERVAL`` (5 minutes) as a guard against what reads cannot show: a
controller whose decision depends on time without asking for a requeue, or on
in-memory state of its own.

With ``threaded=False`` nothing runs in the background: a simulation calls
``run_until_idle()`` and moves its clock, which makes the rollout scenarios
deterministic (a simulation may still ``start_watchers()``: the fake driver
delivers its events synchronously, in the thread that made the change).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor as JobExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from reconciler.controllers.deployment.controller import DeploymentController
from reconciler.controllers.endpoints import EndpointsController
from reconciler.controllers.node import NodeBinding, NodeController, node_is_ready
from reconciler.controllers.nodelifecycle import DEFAULT_TOLERATION, NodeLifecycleController
from reconciler.controllers.replicaset import ReplicaSetController
from reconciler.controllers.service.controller import ServiceController
from reconciler.core import objects as o
from reconciler.core.clock import Clock
from reconciler.core.workqueue import WorkQueue
from reconciler.kubelet.agent import NodeAgent
from reconciler.scheduler.scheduler import Scheduler
from runtime.driver import EngineEvent, EventsUnsupported

log = structlog.get_logger("manager")

DEFAULT_RELIST_INTERVAL = 5.0
# Seconds (manager clock) between real full passes; see the module docstring for why one is kept.
GUARD_INTERVAL = 300.0
# Queues whose keys a resync looks at (node agents are the relist's).
_RESYNCED = ("deployment", "replicaset", "scheduler", "service", "endpoints", "nodelifecycle")
WATCHER_JOIN = 3.0  # seconds stop() waits for watcher threads (a watch honours stop at once, or
# within its read timeout where the stream's socket cannot be shut down)


# What a reconcile read, as keys of ControllerManager._changed: an object is (kind, namespace,
# name); a lookup is a scope — ("list", kind, namespace|None), ("owner", kind, owner_kind, uid),
# ("node", kind, node) — plus ("wild", kind), bumped when a change's old index terms are unknown.
_Dep = tuple[Hashable, ...]


@dataclass
class _Reads:
    """Collected during one reconcile (one per thread at a time)."""
    deps: set[_Dep]
    kv: set[str]


@dataclass(frozen=True, kw_only=True)
class _Clean:
    """A key's last clean reconcile: it started at change number ``seq`` and read ``deps``
    (and these key/values, with the values they had when it ended)."""
    seq: int
    deps: frozenset[_Dep]
    kv: tuple[tuple[str, Any], ...]


class _ReadTracking:
    """The store as the controllers see it: every read is noted in the running reconcile's
    ``_Reads`` (if any), everything else is the store's own method."""

    def __init__(self, *, store: Any, local: threading.local) -> None:
        self._store = store
        self._local = local

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def _reads(self) -> _Reads | None:
        return getattr(self._local, "reads", None)

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        reads = self._reads()
        if reads is not None:
            # Also when absent: its creation is a change of what this reconcile saw.
            reads.deps.add((kind, namespace or "", name))
        return self._store.get(kind, namespace, name)

    def list(self, kind: str, namespace: str | None = None) -> list[dict]:
        reads = self._reads()
        if reads is not None:
            reads.deps.add(("list", kind, namespace))
        return self._store.list(kind, namespace)

    def with_labels(self, kind: str, *, labels: Mapping[str, str], namespace: str | None = None) -> list[dict]:
        reads = self._reads()
        if reads is not None:
            # Label membership is not tracked per pair: any change of the kind in the namespace.
            reads.deps.add(("list", kind, namespace))
        return self._store.with_labels(kind, labels=labels, namespace=namespace)

    def owned_by(self, kind: str, *, owner_kind: str, owner_uid: str, namespace: str | None = None) -> list[dict]:
        found = self._store.owned_by(kind, owner_kind=owner_kind, owner_uid=owner_uid, namespace=namespace)
        self._note_lookup(("owner", kind, owner_kind, owner_uid), kind, found)
        return found

    def on_node(self, kind: str, *, node: str, namespace: str | None = None) -> list[dict]:
        found = self._store.on_node(kind, node=node, namespace=namespace)
        self._note_lookup(("node", kind, node), kind, found)
        return found

    def _note_lookup(self, scope: _Dep, kind: str, found: Iterable[dict]) -> None:
        reads = self._reads()
        if reads is None:
            return
        reads.deps.add(scope)
        reads.deps.add(("wild", kind))
        for obj in found:
            meta = obj["metadata"]
            reads.deps.add((kind, meta.get("namespace") or "", meta["name"]))

    def update(self, kind: str, namespace: str, name: str, mutate: Callable[[dict], dict | None]) -> dict | None:
        reads = self._reads()
        if reads is not None:
            reads.deps.add((kind, namespace or "", name))  # mutate decides on what it read
        return self._store.update(kind, namespace, name, mutate)

    def kv_get(self, key: str, default: object = None) -> object:
        reads = self._reads()
        if reads is not None:
            reads.kv.add(key)  # kv writes do not notify watchers: compared by value instead
        return self._store.kv_get(key, default)


def _owner_terms(kind: str, obj: dict | None) -> frozenset[_Dep]:
    """The owner and node scopes an object belongs to, as the store's index computes them
    (per owner kind, the first ownerReference of that kind that is a controller)."""
    if obj is None:
        return frozenset()
    terms: set[_Dep] = set()
    seen: set[Any] = set()
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if not isinstance(ref, dict):
            continue
        ref_kind = ref.get("kind")
        try:
            if ref_kind in seen or not ref.get("controller", True):
                continue
            seen.add(ref_kind)
            terms.add(("owner", kind, ref_kind, ref.get("uid")))
        except TypeError:  # unhashable: the store does not index it either
            continue
    node = (obj.get("spec") or {}).get("nodeName") if isinstance(obj.get("spec"), dict) else None
    if node and isinstance(node, str):
        terms.add(("node", kind, node))
    return frozenset(terms)


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
        self.guard_interval = GUARD_INTERVAL
        self._watch_stop = threading.Event()
        self._watchers: list[threading.Thread] = []
        self._local = threading.local()
        tracked = _ReadTracking(store=store, local=self._local)
        self.deployments = DeploymentController(store=tracked, clock=clock, apply_lock=apply_lock)
        self.replicasets = ReplicaSetController(store=tracked, clock=clock)
        self.scheduler = Scheduler(store=tracked, clock=clock)
        self.services = ServiceController(store=tracked, clock=clock, service_cidr=service_cidr)
        self.endpoints = EndpointsController(store=tracked, clock=clock)
        # Set by the daemon: the service proxy's sync, woken by Service/Endpoints/Pod changes.
        self.on_network_change: Any = lambda: None
        self.nodes = NodeController(store=store, clock=clock, nodes=list(nodes))
        self.lifecycle = NodeLifecycleController(store=tracked, clock=clock, nodes=[n.name for n in nodes],
                                                 toleration=node_toleration, on_pod_removed=self._forget_pod)
        self.agents: dict[str, NodeAgent] = {}
        handlers: dict[str, tuple[Callable[[Hashable], Any], int]] = {
            "deployment": (self.deployments.reconcile, 2),
            "replicaset": (self.replicasets.reconcile, 2),
            "scheduler": (self.scheduler.reconcile, 1),
            # One worker: allocations of ClusterIPs and nodePorts must not race.
            "service": (self.services.reconcile, 1),
            "endpoints": (self.endpoints.reconcile, 2),
            "nodelifecycle": (self.lifecycle.reconcile, 1),
        }
        # Per queue: each key's last clean reconcile (see _tracked).
        self._clean: dict[str, dict[Hashable, _Clean]] = {name: {} for name in handlers}
        self.queues: dict[str, WorkQueue] = {
            name: WorkQueue(name=name, handler=self._tracked(name, handler), workers=workers, clock=clock)
            for name, (handler, workers) in handlers.items()
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
        # Guarded by _owner_lock: what the watch remembers of each object, so a resync needs
        # no store listing. Pods: (owning ReplicaSet, node); ReplicaSets: their Deployment;
        # the keys of the kinds a resync enqueues; owner/node terms of Pods and ReplicaSets.
        self._pod_owner: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        self._rs_owner: dict[tuple[str, str], str | None] = {}
        self._keys: dict[str, dict[str, set[str]]] = {"Deployment": {}, "ReplicaSet": {}, "Service": {}}
        self._terms: dict[tuple[str, str, str], frozenset[_Dep]] = {}
        self._owner_lock = threading.Lock()
        # Change numbers (see _Reads): _seq counts changes; _changed holds, per object or scope,
        # the number of its last change. A clean record older than _floor is never trusted.
        self._seq = 0
        self._floor = 0
        self._changed: dict[_Dep, int] = {}
        self._last_full: float | None = None
        self._scheduler: BackgroundScheduler | None = None
        store.watch(self._on_change)

    # -- what changed --------------------------------------------------------------------
    def _remember(self, kind: str, namespace: str, name: str, obj: dict | None) -> tuple[str | None, str | None]:
        """Note one change: bump the change numbers of the object and of every scope it left
        or joined, and keep the manager's memory of keys and owners current. For a Pod,
        returns its (ReplicaSet, node) from before the change (a deletion routes by them)."""
        key = (namespace, name)
        with self._owner_lock:
            self._seq += 1
            seq = self._seq
            changed = self._changed
            changed[(kind, namespace, name)] = seq
            changed[("list", kind, namespace)] = seq
            changed[("list", kind, None)] = seq
            if kind in ("Pod", "ReplicaSet"):
                ident = (kind, namespace, name)
                old_terms = self._terms.pop(ident, None)
                new_terms = _owner_terms(kind, obj)
                if obj is not None:
                    self._terms[ident] = new_terms
                if old_terms is None and obj is None:
                    # A deletion of an object the manager never saw: the scopes it left are unknown.
                    changed[("wild", kind)] = seq
                # (An object never seen that still exists is a creation: it left no scope.)
                for term in new_terms.symmetric_difference(old_terms or frozenset()):
                    changed[term] = seq
            previous: tuple[str | None, str | None] = (None, None)
            if kind == "Pod":
                previous = self._pod_owner.pop(key, (None, None))
                if obj is not None:
                    self._pod_owner[key] = (o.owner_name(obj, "ReplicaSet"), (obj.get("spec") or {}).get("nodeName"))
            elif kind == "ReplicaSet" and obj is not None:
                self._rs_owner[key] = o.owner_name(obj, "Deployment")
            if kind in self._keys:
                names = self._keys[kind].setdefault(namespace, set())
                if obj is not None:
                    names.add(name)
                else:
                    names.discard(name)
                    if not names:
                        del self._keys[kind][namespace]
        return previous

    def _learn(self, kind: str, objs: list[dict]) -> None:
        """A full resync's lists: the whole truth about ``kind`` (no change numbers move)."""
        keys: dict[str, set[str]] = {}
        with self._owner_lock:
            for obj in objs:
                meta = obj["metadata"]
                namespace, name = meta.get("namespace") or "", meta["name"]
                keys.setdefault(namespace, set()).add(name)
                if kind in ("Pod", "ReplicaSet"):
                    self._terms[(kind, namespace, name)] = _owner_terms(kind, obj)
                if kind == "Pod":
                    self._pod_owner[(namespace, name)] = (o.owner_name(obj, "ReplicaSet"),
                                                          (obj.get("spec") or {}).get("nodeName"))
                elif kind == "ReplicaSet":
                    self._rs_owner[(namespace, name)] = o.owner_name(obj, "Deployment")
            if kind in self._keys:
                self._keys[kind] = keys

    def _tracked(self, queue: str, handler: Callable[[Hashable], Any]) -> Callable[[Hashable], Any]:
        """Run ``handler`` with its reads noted; remember a clean outcome for ``resync``."""
        records = self._clean[queue]

        def run(key: Hashable) -> Any:
            reads = _Reads(deps=set(), kv=set())
            with self._owner_lock:
                started = self._seq
            records.pop(key, None)
            self._local.reads = reads
            try:
                result = handler(key)
            finally:
                self._local.reads = None
            if result is None or getattr(result, "requeue_after", None) is None:
                kv = tuple((k, self.store.kv_get(k)) for k in sorted(reads.kv))
                record = _Clean(seq=started, deps=frozenset(reads.deps), kv=kv)
                with self._owner_lock:  # against a full resync clearing the records meanwhile
                    if started >= self._floor:
                        records[key] = record
            return result

        return run

    def _still_clean(self, queue: str, key: Hashable) -> bool:
        record = self._clean[queue].get(key)
        if record is None:
            return False
        changed, seq = self._changed, record.seq
        for dep in record.deps:
            if changed.get(dep, 0) > seq:
                return False
        return all(self.store.kv_get(k) == value for k, value in record.kv)

    # -- routing ---------------------------------------------------------------------
    def _on_change(self, kind: str, namespace: str, name: str) -> None:
        key = (namespace, name)
        obj = self.store.get(kind, namespace, name) if kind in ("Pod", "ReplicaSet", "Deployment", "Service") else None
        previous = self._remember(kind, namespace, name, obj)
        if kind == "Pod":
            self.scheduler.observe_pod(namespace, name)  # its per-node aggregates, before any placement
        if kind == "Deployment":
            self.queues["deployment"].add(key)
        elif kind == "ReplicaSet":
            self.queues["replicaset"].add(key)
            with self._owner_lock:
                owner = self._rs_owner.get(key) if obj is not None else self._rs_owner.pop(key, None)
            if owner:
                self.queues["deployment"].add((namespace, owner))
        elif kind == "Pod":
            pod = obj
            if pod is not None:
                rs_name, node = o.owner_name(pod, "ReplicaSet"), (pod.get("spec") or {}).get("nodeName")
            else:
                rs_name, node = previous  # a deletion carries only the key: route by what was remembered
            with self._owner_lock:
                services = sorted(self._keys["Service"].get(namespace, ()))
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
            for svc in services:
                self.queues["endpoints"].add((namespace, svc))
            self.on_network_change()
        elif kind == "Service":
            self.queues["service"].add(key)
            self.queues["endpoints"].add(key)
            self.on_network_change()
        elif kind == "Endpoints":
            self.on_network_change()
        elif kind in ("ConfigMap", "Secret"):
            # A Deployment's effective template includes a digest of what it reads.
            with self._owner_lock:
                deployments = sorted(self._keys["Deployment"].get(namespace, ()))
            for d in deployments:
                self.queues["deployment"].add((namespace, d))
        elif kind == "Node":
            self.queues["nodelifecycle"].add(name)
            # A node turning Ready may unblock pending pods (terminating ones the scheduler deletes).
            for pod_key in self._pending():
                self.queues["scheduler"].add(pod_key)

    def _pending(self) -> list[tuple[str, str]]:
        with self._owner_lock:
            return sorted(k for k, (_, node) in self._pod_owner.items() if not node)

    def resync(self, *, full: bool | None = None) -> None:
        """Level-based safety net: look again at every key whose reads changed.

        ``full`` (default: the first resync, then every ``guard_interval``) looks at every
        key regardless; the first one also hands every pod to its node agent, as at start
        the agents have compared nothing yet."""
        now = self.clock.now()
        first = self._last_full is None
        if full is None:
            full = first or now - (self._last_full or 0.0) >= self.guard_interval
        if full:
            self._full_resync(agents=first)
            self._last_full = now
            return
        with self._owner_lock:
            keys = {kind: [(ns, n) for ns, names in by_ns.items() for n in names] for kind, by_ns in self._keys.items()}
            lost_nodes = {node for _, node in self._pod_owner.values() if node}
        wanted = {"deployment": keys["Deployment"], "replicaset": keys["ReplicaSet"], "service": keys["Service"],
                  "endpoints": keys["Service"], "scheduler": self._pending(),
                  "nodelifecycle": sorted(set(self.nodes.names) | {n for n in lost_nodes if not self._node_usable(n)})}
        for queue, queue_keys in wanted.items():
            records = self._clean[queue]
            live = set(queue_keys)
            for gone in [k for k in list(records) if k not in live]:  # workers add records meanwhile
                records.pop(gone, None)  # deleted objects' records would pile up
            for key in queue_keys:
                if not self._still_clean(queue, key):
                    self.queues[queue].add(key)

    def _full_resync(self, *, agents: bool) -> None:
        """Every key of every controller (and, with ``agents``, every pod to its node agent)."""
        with self._owner_lock:
            # Everything is looked at now, so earlier change numbers are not needed any more;
            # reconciles that started before this line are not trusted as clean.
            self._floor = self._seq
            self._changed.clear()
            for records in self._clean.values():
                records.clear()
        listed = {kind: self.store.list(kind) for kind in ("Deployment", "ReplicaSet", "Service", "Pod")}
        for kind, objs in listed.items():
            self._learn(kind, objs)
        for d in listed["Deployment"]:
            self.queues["deployment"].add((d["metadata"]["namespace"], d["metadata"]["name"]))
        for rs in listed["ReplicaSet"]:
            self.queues["replicaset"].add((rs["metadata"]["namespace"], rs["metadata"]["name"]))
        for svc in listed["Service"]:
            self.queues["service"].add((svc["metadata"]["namespace"], svc["metadata"]["name"]))
            self.queues["endpoints"].add((svc["metadata"]["namespace"], svc["metadata"]["name"]))
        usable = {name: self._node_usable(name) for name in self.nodes.names}
        for pod in listed["Pod"]:
            key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
            node = (pod.get("spec") or {}).get("nodeName")
            if not node:
                self.queues["scheduler"].add(key)
            elif not usable.get(node, False):
                self.queues["nodelifecycle"].add(node)
            elif agents and f"node/{node}" in self.queues:
                self.queues[f"node/{node}"].add(key)
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
