"""The pod lifecycle event generator (the kubelet's PLEG): which pod keys to look at.

The node agent's view of what the engine has, and the decisions that come from it.
It learns by relisting (one ``list_pods`` call, every second or so) and compares
that with the store; a difference enqueues the pod's key. A relist decodes only its
node's pods, once, and does not recompute the status of a pod whose engine state and
store version are both what the previous relist found in step. The engine's labels
carry ownership, so after a restart of the daemon a pod that is already running is
recognised by its uid and left alone.

Sooner than the relist, the engine's event stream (``on_engine_event``, fed by the
manager's watcher thread) marks a pod's cached state stale and enqueues its key: the
work item is the key, never the event, and the reconcile reads the pod back from the
engine before acting (``current``). The relist stays as the safety net for events that
were missed. The relist also finds lone containers (our labels, no pod of ours; at most
every few seconds, as the look costs a relist) and enqueues each as a
``StrayContainer`` item, which removes it.

Why apart from the pod worker: this is the only part that reads the engine in bulk
and the only state shared between the relist thread, the event watcher and the
workers (under one lock); the worker asks it for one pod's state and tells it when it
removed one.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import structlog

from reconciler.core import objects as o
from reconciler.core.clock import Clock
from reconciler.core.keys import LABEL_GRACE
from runtime.driver import EngineEvent, LoneContainer, NodeDriver, PodState, WatchStatus

log = structlog.get_logger("nodeagent")

Obj = dict[str, Any]
PodKey = tuple[str, str]

# A stray container's stop grace unless it carries our grace label: the kubelet's minimum
# grace period, as no workload of ours waits on it.
STRAY_GRACE = 2
# Lone containers are rare and looking for them costs as much as a relist, so not every relist
# looks: at most this often (so one is gone within about this long plus its grace).
LONE_SCAN_INTERVAL = 5.0


@dataclass(frozen=True, kw_only=True)
class StrayContainer:
    """A node agent work item: remove this lone container (a key of its own kind, never a pod key)."""
    container_id: str
    name: str
    grace_seconds: int = STRAY_GRACE


def stray_item(container: LoneContainer) -> StrayContainer:
    """The work item for a lone container; its grace comes from our label when it has a sane one."""
    grace = container.labels.get(LABEL_GRACE, "")
    seconds = int(grace) if grace.isdigit() else STRAY_GRACE
    return StrayContainer(container_id=container.container_id, name=container.name,
                          grace_seconds=min(seconds, 300))


class PodLifecycleEventGenerator:
    """The engine view of one node, and the keys it says need a look; thread-safe."""

    def __init__(self, *, node: str, driver: NodeDriver, store: Any, clock: Clock,
                 enqueue: Callable[[Hashable], None], in_step: Callable[[Obj, PodState], bool]) -> None:
        """``in_step(pod, state)``: does the pod's stored status already say what the engine
        state implies (so the relist need not enqueue it)?"""
        self.node = node
        self._driver = driver
        self._store = store
        self._clock = clock
        self._enqueue = enqueue
        self._in_step_with = in_step
        self._lock = threading.Lock()
        self._runtime: dict[PodKey, PodState] = {}
        self._listed = False
        # Pods the last relist found in step with the engine: key -> (PodState, resourceVersion).
        self._in_step: dict[PodKey, tuple[PodState, Any]] = {}
        # An engine event said: read this pod back before acting (with the events' actions).
        self._stale: dict[PodKey, set[str]] = {}
        self.lone_scan_interval = LONE_SCAN_INTERVAL
        self._lone_scanned: float | None = None  # clock time of the last look for lone containers

    # -- engine events ---------------------------------------------------------------------
    def on_engine_event(self, event: EngineEvent) -> None:
        """Something happened to one of the pod's containers: look at the pod again, now."""
        key = (event.namespace, event.name)
        with self._lock:
            if event.action == "start":
                # Most start events are our own starts, already read back: the view shows the
                # container running, and reading the pod again would find nothing new.
                state = self._runtime.get(key)
                if state is not None and any(c.name == event.container and c.state == "running"
                                             for c in state.containers):
                    return
            self._stale.setdefault(key, set()).add(event.action)
        self._enqueue(key)

    def on_watch_status(self, status: WatchStatus) -> None:
        """The event stream opened or was lost (called on changes only, so each outage logs once)."""
        if status.connected:
            log.info("engine events streaming; drift is seen at once", node=self.node, action="watch")
        else:
            log.warning("engine events unavailable; relying on relists", node=self.node, reason=status.reason,
                        action="watch")

    # -- relist --------------------------------------------------------------------------
    def relist(self) -> list[PodKey | StrayContainer]:
        """Refresh the engine view; return (and enqueue) the keys whose pods need attention,
        and a StrayContainer item for each lone container."""
        states = self._driver.list_pods()
        runtime = {(s.namespace, s.name): s for s in states}
        with self._lock:
            self._runtime = runtime
            self._listed = True
        dirty: list[PodKey] = []
        # Pods found in step last time, by (engine state, store resourceVersion): while neither
        # moved, recomputing the status (and the probe specs behind it) finds the same answer.
        # (Prober results and back-offs change without either; they enqueue the pod themselves.)
        before: dict[PodKey, tuple[PodState, Any]] = self._in_step
        after: dict[PodKey, tuple[PodState, Any]] = {}
        here: set[PodKey] = set()
        # Only this node's pods, decoded once (the store's node index).
        for pod in self._store.on_node("Pod", node=self.node):
            key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
            here.add(key)
            if o.is_terminating(pod):
                dirty.append(key)
                continue
            state = runtime.get(key)
            if state is None or state.uid != pod["metadata"].get("uid"):
                dirty.append(key)
                continue
            version = pod["metadata"].get("resourceVersion")
            seen = before.get(key)
            if seen is not None and seen[1] == version and seen[0] == state:
                after[key] = seen
                continue
            if not self._in_step_with(pod, state) or any(c.state != "running" for c in state.containers):
                dirty.append(key)
                continue
            after[key] = (state, version)
        self._in_step = after
        for key in runtime:  # this relist's copy: reconciles replace entries of self._runtime meanwhile
            if key not in here and self._store.get("Pod", *key) is None:
                dirty.append(key)  # an orphan: the reconcile removes it
        for key in dirty:
            self._enqueue(key)
        strays: list[StrayContainer] = []
        now = self._clock.now()
        if self._lone_scanned is None or now - self._lone_scanned >= self.lone_scan_interval:
            strays = [stray_item(c) for c in self._driver.list_lone_containers()]
            self._lone_scanned = now
        for stray in strays:
            self._enqueue(stray)
        return [*dirty, *strays]

    # -- one pod -----------------------------------------------------------------------------
    def current(self, key: PodKey) -> PodState | None:
        """The engine state a reconcile of ``key`` acts on: after an engine event the cached
        state predates it, so this one pod is read back; otherwise the last relist's."""
        with self._lock:
            stale = self._stale.pop(key, None) is not None
        if not self._listed:
            self._refresh()
        return self.refresh(key) if stale else self._state(key)

    def refresh(self, key: PodKey) -> PodState | None:
        """Read back only the pod just acted on; the periodic relist covers the rest."""
        state = self._driver.pod_state(namespace=key[0], name=key[1])
        with self._lock:
            if state is None:
                self._runtime.pop(key, None)
            else:
                self._runtime[key] = state
        return state

    def absorb_own_starts(self, key: PodKey) -> None:
        """Forget the start events of the start just made: the read-back that follows it sees
        all they could tell. (They mostly arrive before that read-back has put the running
        containers in the view, where ``on_engine_event`` would have ignored them, and each
        cost a second read-back of the pod beside the rollout's next engine calls.) Any other
        event keeps the pod stale; events after this line are handled as usual."""
        with self._lock:
            if self._stale.get(key, {"start"}) <= {"start"}:
                self._stale.pop(key, None)

    def absorb_own_restarts(self, key: PodKey) -> None:
        """Like ``absorb_own_starts``, for a restart just made: a restart is a new container, so
        the old one's died and remove events come with the new one's start. Called just before
        the read-back, which sees all that these events could tell."""
        with self._lock:
            if self._stale.get(key, {"start"}) <= {"start", "died", "remove"}:
                self._stale.pop(key, None)

    def removed(self, key: PodKey) -> None:
        """The worker removed this engine pod: it is gone from the view."""
        with self._lock:
            self._runtime.pop(key, None)

    def _state(self, key: PodKey) -> PodState | None:
        with self._lock:
            return self._runtime.get(key)

    def _refresh(self) -> None:
        states = self._driver.list_pods()
        with self._lock:
            self._runtime = {(s.namespace, s.name): s for s in states}
            self._listed = True
