"""The kubelet of one node as the manager runs it: its pod queue, heartbeats, relists, engine events.

``Kubelet`` registers with the controller manager like any controller (a queue named
``node/<name>``, fed by the Pods bound to its node) and adds what only a kubelet has:

- **Heartbeats** (node status): ping the engine, write the Node (``nodestatus``).
- **Relists**, the safety net under the events, as Kubernetes' Evented PLEG does them
  (``pleg.py``): ``poll`` runs every ``relist_interval`` (default 5 s; the config's
  ``relistInterval``) and relists each time only while the event stream is down; while
  it is healthy, every ``QUIET_RELIST_INTERVAL`` (900 s), and at once when it
  (re)connects (in the watcher thread, before the stream's first event is read).
- **Engine events**: one watcher thread on the engine's event stream, handing each event
  to the agent (a key to look at at once).

A kubelet's work items are dropped while its Node is NotReady: its view of that engine
is stale, and writing status from it would undo what the node lifecycle controller says
about the node's pods (Unknown, not ready). Nothing is lost by dropping: the next poll
after the node is usable again relists, which finds every difference anew.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import structlog

from reconciler.core.watches import Cache, Change, Watch, Watches
from reconciler.core.workqueue import Result
from reconciler.kubelet.agent import NodeAgent
from runtime.driver import EngineEvent, EventsUnsupported, WatchStatus

log = structlog.get_logger("kubelet")

DEFAULT_RELIST_INTERVAL = 5.0
WATCHER_JOIN = 3.0  # seconds stop waits for the watcher thread (a watch honours stop at once, or
# within its read timeout where the stream's socket cannot be shut down)


class Kubelet:
    workers = 8

    def __init__(self, *, agent: NodeAgent, heartbeat: Callable[[str], Any], usable: Callable[[str], bool],
                 relist_interval: float | None = None) -> None:
        self.agent = agent
        self.node = agent.node
        self.name = f"node/{self.node}"
        self.relist_interval = relist_interval or DEFAULT_RELIST_INTERVAL
        self._heartbeat = heartbeat
        self._usable = usable
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        self._dropped = False  # work items were dropped while the node was unusable: relist once it is back
        self.watches: tuple[Watch, ...] = (Watches("Pod", self._mine),)

    # -- as a controller ----------------------------------------------------------------
    def _mine(self, change: Change, _cache: Cache) -> list[tuple[str, str]]:
        return [change.key] if change.node == self.node else []

    def resync_keys(self, cache: Cache, *, first: bool) -> Iterable[Hashable]:
        # Only the first pass: afterwards engine drift is the relist's and the events' business.
        if not first:
            return ()
        # The first look is a relist: it enqueues the pods not in step with the engine (and
        # orphans, lone containers) and tells the prober about every running container; a pod
        # already in step needs no reconcile. (A restarted daemon's node agent finds nearly
        # all in step: at 30,000 pods, reconciling each only to find so was most of a start-up.)
        try:
            self.agent.relist()
        except Exception:  # the engine does not answer: every pod, as the reconciles will tell
            return cache.pods_on(self.node)
        return ()

    def reconcile(self, key: Any) -> Result | None:
        if not self._usable(self.node):
            self._dropped = True
            return None  # stale engine view; the relist finds this again once the node answers
        result: Result | None = self.agent.reconcile(key)
        return result

    # -- node status and relists ---------------------------------------------------------------
    def heartbeat(self) -> None:
        self._heartbeat(self.node)

    def relist(self) -> None:
        """A full relist now (the simulation's and tests' call; the periodic job is ``poll``)."""
        try:
            self.agent.relist()
        except Exception:  # an unreachable node is the heartbeat's business
            pass

    def poll(self) -> None:
        """The periodic job: a relist when the PLEG says one is due (see pleg.py), else at most a
        look for lone containers; most polls of a node with a healthy event stream call nothing."""
        if self._dropped and self._usable(self.node):
            self._dropped = False
            self.agent.pleg.request_relist()
        try:
            self.agent.pleg.poll()
        except Exception:  # an unreachable node is the heartbeat's business
            pass

    # -- engine events -------------------------------------------------------------------
    def start_watcher(self) -> None:
        """The thread on the engine's event stream (a no-op if it runs already)."""
        if self._watcher is not None:
            return
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, args=(self._stop,), name=f"watch/{self.node}",
                                         daemon=True)
        self._watcher.start()

    def stop_watcher(self, *, deadline: float) -> None:
        """Tell the watcher to stop; wait for it until ``deadline`` (time.monotonic())."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=max(deadline - time.monotonic(), 0.0))
        self._watcher = None

    def _watch(self, stop: threading.Event) -> None:
        agent = self.agent

        def on_event(event: EngineEvent) -> None:
            # The watcher must outlive any one bad event: a failure here only costs
            # the relist's latency for that pod.
            try:
                agent.on_engine_event(event)
            except Exception:
                log.exception("engine event handling failed", node=self.node, pod=f"{event.namespace}/{event.name}")

        def on_status(status: WatchStatus) -> None:
            agent.on_watch_status(status)
            if status.connected:
                # Events may have been lost before the stream (re)opened: relist now, before
                # its first event is read (what arrives meanwhile waits in the socket).
                self.relist()

        try:
            agent.driver.watch(on_event=on_event, stop=stop, on_status=on_status)
        except EventsUnsupported as exc:
            log.info("engine events unavailable; relying on relists", node=self.node, reason=str(exc),
                     relist_interval=self.relist_interval, action="watch")
        except Exception as exc:  # a watcher bug must not take the daemon down; relists go on
            log.warning("engine event watcher ended; relying on relists", node=self.node,
                        error=f"{type(exc).__name__}: {exc}", relist_interval=self.relist_interval, action="watch")
        finally:
            agent.pleg.events_ended()  # no stream any more: every poll relists
