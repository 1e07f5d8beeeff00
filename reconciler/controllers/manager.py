"""The controller manager: one work queue per registered controller, fed by what each declares.

controller-runtime's manager: a controller is registered once (``add``) with its
``watches`` (``For``/``Owns``/``Watches``, see ``reconciler.core.watches``); every store
change is routed by a loop over those declarations — never by a table of kinds here —
so a new controller is added in its own module and one line of the composition root.
Observers (``observe``) see changes before any queue does: the scheduler's per-node
totals must be current before a placement, and the proxy's sync is woken by them.

Watch → key, never event: deletions carry only a key, so the manager remembers the
controller owners of every object of an owned kind and the node of every Pod
(``Remembered``), to route a deletion as the object was.

Resync without redoing (docs/performance.md): controllers registered with ``tracked``
read the store through ``reader`` (``tracking.ReadTracking``), which notes what each
reconcile read; a later ``resync()`` enqueues a key only when something it read has
changed since (or it was never reconciled). The store's watchers cannot miss a write,
so this loses nothing a full pass would find from the store. The records are filed by what
they read (``cleanrecords.CleanRecords``): a change drops the ones it affects as it is
routed, so a resync costs what changed, not every key's reads (issue 16). A real full pass still
runs every ``GUARD_INTERVAL`` (5 minutes) against what reads cannot show: a decision
that depends on time without asking for a requeue, or on in-memory state.

With ``threaded=False`` nothing runs in the background: a simulation calls
``run_until_idle()`` and moves its clock, which makes the rollout scenarios deterministic.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor as JobExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from reconciler.controllers.cleanrecords import CleanRecords
from reconciler.controllers.tracking import Clean, Dep, Reads, ReadTracking, owner_terms
from reconciler.core.bodies import Body
from reconciler.core.clock import Clock
from reconciler.core.watches import (
    Change,
    Controller,
    NamespacedKey,
    Owns,
    Remembered,
    controller_owners,
    for_kind,
    route,
)
from reconciler.core.workqueue import DoneHook, WorkQueue

log = structlog.get_logger("manager")

# Seconds (manager clock) between real full passes; see the module docstring for why one is kept.
GUARD_INTERVAL = 300.0
# Kinds whose objects carry owner/node scopes that reconciles look up (the store's indexes).
_SCOPED = ("Pod", "ReplicaSet")


@dataclass(frozen=True, kw_only=True)
class _Registered:
    controller: Controller
    queue: WorkQueue
    tracked: bool


class ControllerManager:
    def __init__(self, *, store: Any, clock: Clock, threaded: bool = True, resync_interval: float = 10.0,
                 queue_observer: Callable[[str], DoneHook] | None = None) -> None:
        self.store = store
        # Per queue name, the hook that sees every reconcile (the daemon's metrics).
        self._queue_observer = queue_observer
        self.clock = clock
        self._threaded = threaded
        self._resync_interval = resync_interval
        self.guard_interval = GUARD_INTERVAL
        self._local = threading.local()
        self._reader = ReadTracking(store=store, local=self._local)
        self._registered: dict[str, _Registered] = {}
        self._observers: dict[str, list[Callable[[Change], None]]] = {}
        self._jobs: list[tuple[str, Callable[[], None], float]] = []
        self.queues: dict[str, WorkQueue] = {}
        # Per queue: each key's last clean reconcile (see _tracked), filed by what it read, so a
        # change drops the records it affects and a resync looks only at keys without one.
        # Guarded by _lock.
        self._records = CleanRecords()
        self._clean: dict[str, dict[Hashable, Clean]] = self._records.by_queue
        # Guarded by _lock: what the watch remembers of each object, so routing a deletion and a
        # resync need no store listing: keys of the For kinds, owners of owned kinds, Pods' nodes,
        # and the owner/node scopes of Pods and ReplicaSets.
        self._lock = threading.Lock()
        self._keys: dict[str, dict[str, set[str]]] = {}
        self._owners: dict[tuple[str, str, str], dict[str, str]] = {}
        self._pod_node: dict[NamespacedKey, str | None] = {}
        # The same, inverted, kept with it (_place_pod): a Node change asks for the unbound pods and a
        # resync for every pod's node, which scanning _pod_node made O(pods) each time.
        self._unbound: set[NamespacedKey] = set()
        self._on_node: dict[str, set[NamespacedKey]] = {}
        self._terms: dict[tuple[str, str, str], frozenset[Dep]] = {}
        self._owned_kinds: set[str] = set()
        # Change numbers (see tracking.Reads): _seq counts changes; _changed holds, per object or
        # scope, the number of its last change. A clean record older than _floor is never trusted.
        self._seq = 0
        self._floor = 0
        self._changed: dict[Dep, int] = {}
        self._last_full: float | None = None
        # How a clean record keeps the key/values it read, to compare them at each resync: the stored
        # text where the store offers it (no decoding; a different spelling only costs a reconcile).
        self._kv_value: Callable[[str], Hashable] = getattr(store, "kv_text", None) or partial(_kv_json, store)
        self._scheduler: BackgroundScheduler | None = None
        store.watch(self._on_change)

    # -- registration --------------------------------------------------------------------
    @property
    def reader(self) -> Any:
        """The store as tracked controllers must read it (their reads decide their resyncs)."""
        return self._reader

    def add(self, controller: Controller, *, tracked: bool = True) -> WorkQueue:
        """Register a controller: its queue, routed by its ``watches``; returns the queue."""
        name = controller.name
        if name in self._registered:
            raise ValueError(f"a controller named {name} is registered already")
        with self._lock:
            self._records.add_queue(name)
        handler = self._tracked(name, controller.reconcile) if tracked else controller.reconcile
        queue = WorkQueue(name=name, handler=handler, workers=controller.workers, clock=self.clock,
                          on_done=self._queue_observer(name) if self._queue_observer else None)
        self._registered[name] = _Registered(controller=controller, queue=queue, tracked=tracked)
        self.queues[name] = queue
        with self._lock:
            for watch in controller.watches:
                if isinstance(watch, Owns):
                    self._owned_kinds.add(watch.kind)
            kind = for_kind(controller.watches)
            if kind is not None:
                self._keys.setdefault(kind, {})
        return queue

    def observe(self, kind: str, observer: Callable[[Change], None]) -> None:
        """Call ``observer`` with every change of ``kind``, before any queue sees it."""
        self._observers.setdefault(kind, []).append(observer)

    def every(self, job_id: str, seconds: float, job: Callable[[], None]) -> None:
        """A periodic job of the running manager (its own thread: a slow job delays only itself)."""
        self._jobs.append((job_id, job, seconds))

    # -- the manager's memory (reconciler.core.watches.Cache) ------------------------------
    def names(self, kind: str, namespace: str | None = None) -> list[NamespacedKey]:
        with self._lock:
            by_ns = self._keys.get(kind, {})
            if namespace is not None:
                return [(namespace, n) for n in sorted(by_ns.get(namespace, ()))]
            return [(ns, n) for ns, names in by_ns.items() for n in names]

    def unbound_pods(self) -> list[NamespacedKey]:
        with self._lock:
            return sorted(self._unbound)

    def pod_nodes(self) -> set[str]:
        with self._lock:
            return set(self._on_node)

    def pods_on(self, node: str) -> list[NamespacedKey]:
        with self._lock:
            return sorted(self._on_node.get(node, ()))

    def _place_pod(self, key: NamespacedKey, node: str | None, *, present: bool) -> str | None:
        """Under _lock: note a Pod's node (``present=False``: the pod is gone); returns the node before."""
        before = self._pod_node.pop(key, None)
        if before:
            keys = self._on_node.get(before)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._on_node[before]
        else:
            self._unbound.discard(key)
        if present:
            self._pod_node[key] = node
            if node:
                self._on_node.setdefault(node, set()).add(key)
            else:
                self._unbound.add(key)
        return before

    # -- what changed --------------------------------------------------------------------
    def _remember(self, kind: str, namespace: str, name: str, obj: Body | None) -> Remembered:
        """Note one change: bump the change numbers of the object and of every scope it left or
        joined, and keep the manager's memory current; returns what was remembered before."""
        ident = (kind, namespace, name)
        with self._lock:
            self._seq += 1
            seq = self._seq
            bump = self._bump
            bump(ident, seq)
            bump(("list", kind, namespace), seq)
            bump(("list", kind, None), seq)
            if kind in _SCOPED:
                old_terms = self._terms.pop(ident, None)
                new_terms = owner_terms(kind, obj)
                if obj is not None:
                    self._terms[ident] = new_terms
                if old_terms is None and obj is None:
                    # A deletion of an object the manager never saw: the scopes it left are unknown.
                    bump(("wild", kind), seq)
                for term in new_terms.symmetric_difference(old_terms or frozenset()):
                    bump(term, seq)
            before_owners: dict[str, str] = {}
            if kind in self._owned_kinds:
                before_owners = self._owners.pop(ident, {})
                if obj is not None:
                    self._owners[ident] = controller_owners(obj)
            before_node: str | None = None
            if kind == "Pod":
                before_node = self._place_pod((namespace, name), _node_of(obj) if obj is not None else None,
                                              present=obj is not None)
            if kind in self._keys:
                names = self._keys[kind].setdefault(namespace, set())
                if obj is not None:
                    names.add(name)
                else:
                    names.discard(name)
                    if not names:
                        del self._keys[kind][namespace]
        return Remembered(owners=before_owners, node=before_node)

    def _bump(self, dep: Dep, seq: int) -> None:
        """Under _lock: ``dep`` changed at ``seq``; the clean records that read it are dropped."""
        self._changed[dep] = seq
        self._records.invalidate(dep)

    def _learn(self, kind: str, objs: Iterable[Body]) -> None:
        """A full resync's lists: the whole truth about ``kind`` (no change numbers move)."""
        keys: dict[str, set[str]] = {}
        with self._lock:
            for obj in objs:
                meta = obj["metadata"]
                namespace, name = meta.get("namespace") or "", meta["name"]
                keys.setdefault(namespace, set()).add(name)
                if kind in _SCOPED:
                    self._terms[(kind, namespace, name)] = owner_terms(kind, obj)
                if kind in self._owned_kinds:
                    self._owners[(kind, namespace, name)] = controller_owners(obj)
                if kind == "Pod":
                    self._place_pod((namespace, name), _node_of(obj), present=True)
            if kind in self._keys:
                self._keys[kind] = keys

    def _reads_object(self, kind: str) -> bool:
        # Only kinds whose declarations look at the object (events and the like are never read).
        # Nodes too (few, rarely written): the scheduler compares what placement reads of them.
        return kind in ("Pod", "Node") or kind in self._keys or kind in self._owned_kinds

    def _tracked(self, queue: str, handler: Callable[[Hashable], Any]) -> Callable[[Hashable], Any]:
        """Run ``handler`` with its reads noted; remember a clean outcome for ``resync``."""
        records = self._records

        def run(key: Hashable) -> Any:
            reads = Reads(deps=set(), kv=set())
            with self._lock:
                started = self._seq
                records.drop(queue, key)
            self._local.reads = reads
            try:
                result = handler(key)
            finally:
                self._local.reads = None
            if result is None or getattr(result, "requeue_after", None) is None:
                kv = tuple((k, self._kv_value(k)) for k in sorted(reads.kv))
                record = Clean(seq=started, deps=frozenset(reads.deps), kv=kv)
                with self._lock:  # against a full resync clearing the records meanwhile
                    changed = self._changed
                    # A change while it ran was not filed under this record: then it is not clean.
                    if started >= self._floor and not any(changed.get(dep, 0) > started for dep in record.deps):
                        records.keep(queue, key, record)
            return result

        return run

    def _drop_moved_kv(self) -> None:
        """Drop the records whose key/values differ now (kv writes notify nobody): one read per kv key."""
        with self._lock:
            read = self._records.kv_values()
        moved: list[tuple[str, Hashable]] = []
        for kv_key, values in read:
            now = self._kv_value(kv_key)
            moved.extend((kv_key, value) for value in values if value != now)
        if moved:
            with self._lock:
                for kv_key, value in moved:
                    self._records.drop_kv(kv_key, value)

    # -- routing ---------------------------------------------------------------------------
    def _on_change(self, kind: str, namespace: str, name: str) -> None:
        obj = self.store.get(kind, namespace, name) if self._reads_object(kind) else None
        before = self._remember(kind, namespace, name, obj)
        change = Change(kind=kind, namespace=namespace, name=name, obj=obj, before=before)
        for observer in self._observers.get(kind, ()):
            observer(change)
        for registered in self._registered.values():
            for watch in registered.controller.watches:
                for key in route(watch, change, self):
                    registered.queue.add(key)

    # -- resync ----------------------------------------------------------------------------
    def resync(self, *, full: bool | None = None) -> None:
        """Level-based safety net: look again at every key whose reads changed.

        ``full`` (default: the first resync, then every ``guard_interval``) looks at every
        key regardless; the first one is also each controller's ``first`` pass (the kubelet
        compares every pod of its node once)."""
        now = self.clock.now()
        first = self._last_full is None
        if full is None:
            full = first or now - (self._last_full or 0.0) >= self.guard_interval
        if full:
            self._full_resync(first=first)
            self._last_full = now
            return
        self._drop_moved_kv()
        for name, registered in self._registered.items():
            if not registered.tracked:
                continue
            queue_keys = list(registered.controller.resync_keys(self, first=False))
            with self._lock:
                self._records.drop_gone(name, set(queue_keys))  # deleted objects' records would pile up
                records = self._clean[name]
                # A record present is a key still clean (a change of what it read dropped it).
                todo = [key for key in queue_keys if key not in records]
            for key in todo:
                registered.queue.add(key)

    def _full_resync(self, *, first: bool) -> None:
        """Every key of every controller (untracked ones only on the ``first`` pass)."""
        with self._lock:
            # Everything is looked at now, so earlier change numbers are not needed any more;
            # reconciles that started before this line are not trusted as clean.
            self._floor = self._seq
            self._changed.clear()
            self._records.clear()
            kinds = sorted({*self._keys, *self._owned_kinds, "Pod"})
        # One object decoded at a time where the store can (see CachedReads.each): a list of
        # every pod decoded at once left hundreds of MB resident at 30,000 pods.
        each = getattr(self.store, "each", None)
        for kind in kinds:
            self._learn(kind, each(kind) if each is not None else self.store.list(kind))
        for registered in self._registered.values():
            if registered.tracked or first:
                for key in registered.controller.resync_keys(self, first=first):
                    registered.queue.add(key)

    # -- running -----------------------------------------------------------------------------
    def start(self) -> None:
        for queue in self.queues.values():
            queue.start()
        self._scheduler = BackgroundScheduler(daemon=True, executors={"default": JobExecutor(max(10, len(self._jobs) + 2))})
        for job_id, job, seconds in self._jobs:
            self._scheduler.add_job(job, "interval", seconds=seconds, id=job_id, max_instances=1, coalesce=True)
        self._scheduler.add_job(self.resync, "interval", seconds=self._resync_interval, id="resync", max_instances=1,
                                coalesce=True)
        self._scheduler.start()
        self.resync()

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        for queue in self.queues.values():
            queue.stop()

    def close(self) -> None:
        """Stop listening to the store (a replaced manager must not route changes any more)."""
        self.store.unwatch(self._on_change)

    def run_until_idle(self, *, extra: Callable[[], int] = lambda: 0, max_rounds: int = 10_000) -> None:
        """Simulation: process every due item of every queue (and ``extra`` work) until all are idle."""
        for _ in range(max_rounds):
            done = extra()
            if sum(queue.run_until_idle() for queue in self.queues.values()) == 0 and done == 0:
                return
        raise RuntimeError("controllers did not settle")

    def next_due(self) -> float | None:
        dues = [d for d in (q.next_due() for q in self.queues.values()) if d is not None]
        return min(dues) if dues else None

    def last_progress(self) -> float:
        return min(q.last_progress for q in self.queues.values())


def _kv_json(store: Any, key: str) -> str:
    """A key/value as canonical JSON text (hashable), for a store without ``kv_text``."""
    return json.dumps(store.kv_get(key), sort_keys=True)


def _node_of(pod: Body) -> str | None:
    spec = pod.get("spec")
    node = spec.get("nodeName") if isinstance(spec, dict) else None
    return node if isinstance(node, str) and node else None

