"""The leader/standby switch: runs the daemon's leader-only parts exactly while its elector says it leads.

Every control-plane daemon serves the API, runs its own host's node agent and the Service data
plane; only the leader runs the controllers, the scheduler, the Git source (watcher, applies,
the commit health check that writes the sync record), auto-rollback and the daemon's own
commits. The elector (``leader.py``) decides; this switch turns its verdicts into ``lead()`` and
``follow()`` calls on the daemon, and keeps the daemon's role for `status`, `/metrics` and
systemd's STATUS.

Why a thread of its own: the elector's thread must keep renewing the lease while the daemon
starts its leader parts (building the controllers, a first full resync), so verdicts are handed
over and applied here, in order, one at a time. A loss is applied before any gain that follows
it, and ``follow()`` halts the leader parts at once (queues are told to stop; an in-flight
reconcile may finish its call). Nothing of a term is kept for the next: ``lead()`` builds its
parts afresh, and the controllers' first pass reads every object from the store, so a rollout
in progress continues from what the store says, never from this process's memory.

``stop()`` stops the leader parts first and only then leaves the election (revoking the lease),
so a standby can take over at once, but never while this daemon still acts.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import structlog

from reconciler.daemon.leader import Elector

log = structlog.get_logger("leader")

LEADER, STANDBY = "leader", "standby"


class Leadership:
    def __init__(self, *, elector: Elector, lead: Callable[[], None], follow: Callable[[], None],
                 on_role: Callable[[str], None] = lambda _role: None) -> None:
        self.elector = elector
        self._lead = lead
        self._follow = follow
        self._on_role = on_role
        self._verdicts: queue.Queue[bool | None] = queue.Queue()
        self._lock = threading.Lock()  # held while the daemon's parts change hands
        self._running = False  # the leader parts are running (or being started)
        self.settled = threading.Event()  # the first verdict has been applied
        self._thread: threading.Thread | None = None

    @property
    def role(self) -> str:
        return LEADER if self._running else STANDBY

    @property
    def leading(self) -> bool:
        return self._running

    def start(self) -> None:
        self._thread = threading.Thread(target=self._apply_verdicts, name="leadership", daemon=True)
        self._thread.start()
        self.elector.start(self._verdicts.put)

    def stop(self) -> None:
        """Stop the leader parts (if running), then leave the election."""
        self._verdicts.put(None)
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._apply(False)
        self.elector.stop()  # its step-down verdict finds nothing left to stop

    def _apply_verdicts(self) -> None:
        while True:
            verdict = self._verdicts.get()
            if verdict is None:
                return
            try:
                self._apply(verdict)
            except Exception as exc:  # noqa: BLE001 (the switch must outlive a failed start)
                log.exception("changing the control plane's role failed", leading=verdict, error=str(exc),
                              action="elect")
            finally:
                self.settled.set()

    def _apply(self, leading: bool) -> None:
        with self._lock:
            if leading == self._running:
                return
            if leading:
                self._running = True
                log.info("this daemon leads the control plane: starting controllers, scheduler and Git source",
                         action="elect")
                self._lead()
            else:
                self._running = False
                log.warning("this daemon is a standby now: controllers, scheduler and Git source stopped",
                            action="elect")
                self._follow()
        self._on_role(self.role)
