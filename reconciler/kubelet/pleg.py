"""The pod lifecycle event generator (the kubelet's PLEG): which pod keys to look at.

The node agent's view of what the engine has, and the decisions that come from it.
It learns from the engine's event stream and from relists (one ``list_pods`` call)
compared with the store; a difference enqueues the pod's key. A relist decodes only its
node's pods, once, and does not recompute the status of a pod whose engine state and
store version are both what the previous relist found in step. The engine's labels
carry ownership, so after a restart of the daemon a pod that is already running is
recognised by its uid and left alone.

The event stream (``on_engine_event``, fed by the kubelet's watcher thread) marks a pod's
cached state stale and enqueues its key: the work item is the key, never the event, and
the reconcile reads the pod back from the engine before acting (``current``).

When to relist follows Kubernetes' Evented PLEG (KEP-3386): a relist of 100 pods costs
podman as much CPU as its own idle work over about three minutes (bench/idle.py), so
while the stream is healthy it is only the safety net and runs every
``quiet_relist_interval`` (900 s; the kubelet's is 300 s, see QUIET_RELIST_INTERVAL). When the stream (re)connects,
the next relist runs at once (events may have been lost in the gap; the kubelet's watcher
thread calls it); while it is down or unsupported, ``poll`` (every ``relistInterval``,
5 s) relists each time, as before.

Lone containers (our labels, no pod of ours) are looked for by a relist (at most every
``LONE_SCAN_INTERVAL``; the look costs as much as a relist). While the stream is healthy,
when it says one was made or started (an event that names no pod of ours), on the relist
after each (re)connect, and else hourly. Each becomes a ``StrayContainer`` item, which
removes it. A pod made by hand with our labels is found by its create event.

Why apart from the pod worker: this is the only part that reads the engine in bulk
and the only state shared between the relists, the event watcher and the workers
(under one lock); the worker asks it for one pod's state and tells it when it
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
# Seconds between relists while the engine's event stream is healthy. The kubelet's Evented PLEG
# uses 300 s, but a podman relist is dear: ~0.2 s of podman's CPU for 100 pods (its container
# list inspects every container; the pod list, which costs as much again, is asked only when a
# pod shows nothing but its sandbox), which every 300 s would add a fifth to the engine's own
# idle CPU (bench/idle.py). The stream leaves no gap to cover (a reopen replays
# from where it was: runtime/podman/events.py) and a lost stream makes the next relist run at
# once, so this relist only bounds what nothing else covers (an event podman never logged).
QUIET_RELIST_INTERVAL = 900.0
# While the stream is healthy, lone containers are looked for when an event says one was made or
# started, on the relist after each (re)connect, and otherwise at most this often (a look costs
# podman two lists, as much as a relist: a quarter of its idle CPU if every quiet relist looked).
QUIET_LONE_SCAN_INTERVAL = 3600.0


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
                 enqueue: Callable[[Hashable], None], in_step: Callable[[Obj, PodState], bool],
                 quiet_relist_interval: float = QUIET_RELIST_INTERVAL) -> None:
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
        self.quiet_relist_interval = quiet_relist_interval
        # Guarded by _lock: is the event stream open; must the next poll relist (the stream
        # (re)connected); did an event say a lone container started; when the last relist began.
        self._streaming = False
        self._relist_due = True
        self._lone_due = False
        self._relisted: float | None = None
        self._relisting = threading.Lock()  # one relist at a time (the poll job and the watcher thread)

    # -- engine events ---------------------------------------------------------------------
    def on_engine_event(self, event: EngineEvent) -> None:
        """Something happened to one of the pod's containers: look at the pod again, now."""
        if not event.name:
            # A container with our label in no pod of ours (the driver's events name no pod):
            # the next poll looks for lone containers. Only when one is made or started: its
            # died and remove events are mostly our own removal of it.
            if event.action in ("create", "start"):
                with self._lock:
                    self._lone_due = True
            return
        key = (event.namespace, event.name)
        if event.action == "create" and self._store.get("Pod", *key) is not None:
            # Our own creation (the store's pod came first): a create changes nothing a
            # reconcile reports. Only a pod the store does not hold (one made by hand with our
            # labels, which no start may ever follow) needs the look that removes it.
            return
        with self._lock:
            if event.action == "start":
                # Most start events are our own starts, already read back: the view shows the
                # container running, and reading the pod again would find nothing new.
                # The sandbox's own start ("" container) comes with ours too, and is old news
                # once an app container of the pod shows running (none runs without it).
                state = self._runtime.get(key)
                if state is not None and any((c.name == event.container or not event.container)
                                             and c.state == "running" for c in state.containers):
                    return
            self._stale.setdefault(key, set()).add(event.action)
        self._enqueue(key)

    def on_watch_status(self, status: WatchStatus) -> None:
        """The event stream opened or was lost (called on changes only, so each outage logs once).

        Opened: the next relist runs at once (the kubelet's watcher thread calls it), since
        events may have been lost before it; lost: every poll relists until it is back."""
        with self._lock:
            self._streaming = status.connected
            if status.connected:
                self._relist_due = True
        if status.connected:
            log.info("engine events streaming; drift is seen at once", node=self.node, action="watch")
        else:
            log.warning("engine events unavailable; relying on relists", node=self.node, reason=status.reason,
                        action="watch")

    def events_ended(self) -> None:
        """The watcher is gone for good (an engine without events, or stopping): relist every poll."""
        with self._lock:
            self._streaming = False

    @property
    def streaming(self) -> bool:
        with self._lock:
            return self._streaming

    # -- relist --------------------------------------------------------------------------
    def relist_due(self) -> bool:
        """Must the next poll relist: the stream is not healthy, it reconnected since the last
        relist, or the quiet interval has passed."""
        now = self._clock.now()
        with self._lock:
            return (not self._streaming or self._relist_due or self._relisted is None
                    or now - self._relisted >= self.quiet_relist_interval)

    def request_relist(self) -> None:
        """The next poll relists (e.g. work items were dropped while the node was unusable)."""
        with self._lock:
            self._relist_due = True

    def poll(self) -> list[PodKey | StrayContainer]:
        """The periodic job (every ``relistInterval``): a relist when one is due, else a look for
        lone containers when an event said one started, else nothing (no engine call)."""
        if self.relist_due():
            return self.relist()
        with self._lock:
            lone = self._lone_due
        found: list[PodKey | StrayContainer] = [*self.scan_lone(force=True)] if lone else []
        return found

    def relist(self) -> list[PodKey | StrayContainer]:
        """Refresh the engine view; return (and enqueue) the keys whose pods need attention,
        and a StrayContainer item for each lone container."""
        with self._relisting:
            try:
                return self._relist()
            except Exception:
                with self._lock:
                    self._relist_due = True  # the engine did not answer: the next poll tries again
                raise

    def _relist(self) -> list[PodKey | StrayContainer]:
        with self._lock:
            # Cleared before listing: a reconnect during this relist asks for another.
            asked, self._relist_due = self._relist_due, False
            self._relisted = self._clock.now()
            streaming = self._streaming
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
        # Only this node's pods, decoded once (the store's node index), one at a time where the
        # store can (CachedReads.each: all 30,000 decoded at once stayed resident as a peak).
        each = getattr(self._store, "each", None)
        for pod in each("Pod", node=self.node) if each is not None else self._store.on_node("Pod", node=self.node):
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
        if not streaming:
            return [*dirty, *self.scan_lone()]
        # A healthy stream reports lone containers as they are made; what it cannot have seen
        # is what happened before it (re)connected.
        return [*dirty, *self.scan_lone(force=asked, interval=QUIET_LONE_SCAN_INTERVAL)]

    def scan_lone(self, *, force: bool = False, interval: float | None = None) -> list[StrayContainer]:
        """Look for lone containers (at most every ``interval``, by default ``lone_scan_interval``,
        unless ``force``) and enqueue a StrayContainer item for each."""
        now = self._clock.now()
        every = self.lone_scan_interval if interval is None else interval
        with self._lock:
            if not force and self._lone_scanned is not None and now - self._lone_scanned < every:
                return []
            self._lone_scanned = now
            self._lone_due = False  # cleared before listing: a start after the list asks again
        strays = [stray_item(c) for c in self._driver.list_lone_containers()]
        for stray in strays:
            self._enqueue(stray)
        return strays

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
