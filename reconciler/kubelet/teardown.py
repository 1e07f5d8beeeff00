"""Stopping and removing engine pods, in the order that keeps traffic and rollouts safe.

Order of teardown: the pod is marked (deletionTimestamp) first, which takes it out of
endpoints; while the service proxy still sends to its IP, the stop waits (briefly);
only then are its containers sent SIGTERM, with the grace period, and its sandbox
stopped; then the store object goes, and the engine pod is removed last, beside
whatever waited for the object (a rolling update's next step). A crash mid-way is
finished on restart: before the delete by the marked object, after it by the orphan
rule (an engine pod of ours no object owns, removed as a stray).

Also here: a pod replaced under the same name (another uid), and lone containers
carrying our labels (``StrayContainer`` items from the relist).

Why a module of its own: this is where the node agent destroys things, and each step's
order is a promise to another part (endpoints, the proxy, the rollout); it reports the
removals that correct drift (a stray pod, a stray container) to ``on_drift``.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from reconciler.core.clock import Clock
from reconciler.core.keys import LABEL_GRACE, LABEL_NODE
from reconciler.core.workqueue import Result
from reconciler.kubelet import drift
from reconciler.kubelet.pleg import PodLifecycleEventGenerator, StrayContainer
from reconciler.kubelet.podrequest import remove_volumes
from runtime.driver import LABEL_MANAGED, DriverError, NodeDriver, PodState

log = structlog.get_logger("nodeagent")

Obj = dict[str, Any]
PodKey = tuple[str, str]

DRAIN_WAIT_MAX = 5.0  # never hold a teardown longer than this (or the grace period) for the proxy to let go


class PodTeardown:
    """The node agent's removals: a deleted pod, an orphan, a replaced pod, a stray container."""

    def __init__(self, *, node: str, driver: NodeDriver, store: Any, clock: Clock, pleg: PodLifecycleEventGenerator,
                 volumes_dir: Path, still_serving: Callable[[str], bool], forget: Callable[[PodKey], None],
                 on_drift: drift.OnDrift) -> None:
        """``still_serving(ip)``: is this pod IP still a backend of a load-balanced Service?
        ``forget(key)``: drop what the agent remembers of a pod that is gone (probes, back-offs)."""
        self.node = node
        self._driver = driver
        self._store = store
        self._clock = clock
        self._pleg = pleg
        self._volumes_dir = volumes_dir
        self._still_serving = still_serving
        self._forget = forget
        self._on_drift = on_drift
        self._drain_started: dict[PodKey, float] = {}

    def deleted(self, pod: Obj, state: PodState | None) -> Result | None:
        """A pod marked for deletion: drain, stop, delete the object, remove the engine pod."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        key = (namespace, name)
        spec = pod.get("spec") or {}
        ip = (pod.get("status") or {}).get("podIP")
        if state is not None and ip and self._still_serving(ip):
            # Zero-downtime order: out of the load balancer first, then SIGTERM.
            first = self._drain_started.setdefault(key, self._clock.now())
            grace_now = int(pod["metadata"].get("deletionGracePeriodSeconds", 30))
            if self._clock.now() - first < min(DRAIN_WAIT_MAX, grace_now):
                return Result(requeue_after=0.05)
        self._drain_started.pop(key, None)
        grace = int(pod["metadata"].get("deletionGracePeriodSeconds", spec.get("terminationGracePeriodSeconds", 30)))
        stopped = state is None or self._stop(namespace, name, grace=grace)
        if not stopped:
            # The stop failed: only the removal (which kills) proves nothing runs, so it
            # goes first and the object after it, as a retry would find it.
            self._remove(namespace, name, why="deleted")
        # Otherwise the object goes once the containers and the sandbox have stopped, as
        # the kubelet deletes it once the pod is terminated, and before the engine pod is
        # removed: a rolling update's next step (which waits for this pod to be gone) need
        # not wait for the engine's clean-up too. A crash before the removal leaves a
        # stopped engine pod no object owns, which the agent removes as an orphan.
        self._store.delete("Pod", namespace, name)
        if state is not None and stopped:
            self._remove(namespace, name, why="deleted")
        remove_volumes(uid=pod["metadata"].get("uid", "nouid"), volumes_dir=self._volumes_dir)
        self._forget(key)
        return None

    def orphan(self, key: PodKey, state: PodState) -> None:
        """An engine pod of this node that no Pod object owns (made by hand, or left by a crash)."""
        namespace, name = key
        if state.labels.get(LABEL_NODE, self.node) != self.node:
            return
        # Drift only if the engine really holds it: a relist racing a deletion can hand over
        # the view of a pod removed meanwhile, whose second teardown corrects nothing.
        held = self._driver.pod_state(namespace=namespace, name=name) is not None
        self.teardown(namespace, name, grace=int(state.labels.get(LABEL_GRACE, "10")), why="orphan")
        if held:
            self._on_drift(drift.STRAY_POD_REMOVED)
        remove_volumes(uid=state.uid or "nouid", volumes_dir=self._volumes_dir)
        self._forget(key)

    def teardown(self, namespace: str, name: str, *, grace: int, why: str) -> None:
        """Stop, then remove, whatever the stop's outcome (the removal kills)."""
        self._stop(namespace, name, grace=grace)
        self._remove(namespace, name, why=why)

    def stray(self, stray: StrayContainer) -> None:
        """Remove a lone container: it carries our labels, but no pod of ours holds it."""
        if not self._driver.remove_lone_container(container_id=stray.container_id, grace_seconds=stray.grace_seconds):
            return  # gone already (a second look at the same one, or removed by hand)
        self._on_drift(drift.STRAY_CONTAINER_REMOVED)
        log.info("stray container removed", node=self.node, container=stray.name, id=stray.container_id[:12],
                 action="remove")
        self._store.record_event(kind="Node", namespace="", name=self.node, type="Warning",
                                 reason="RemovedStrayContainer",
                                 message=f"Removed stray container {stray.name or stray.container_id[:12]}: it "
                                         f"carries {LABEL_MANAGED}=true but no object owns it")

    def _stop(self, namespace: str, name: str, *, grace: int) -> bool:
        """SIGTERM with the grace period, then the sandbox; False (logged) when the engine refused
        or did not answer, as the removal that follows kills anyway."""
        try:
            self._driver.stop_pod(namespace=namespace, name=name, grace_seconds=grace)
        except DriverError as exc:
            log.warning("stop failed", object=f"pod/{name}", namespace=namespace, error=str(exc))
            return False
        return True

    def _remove(self, namespace: str, name: str, *, why: str) -> None:
        self._driver.remove_pod(namespace=namespace, name=name)
        self._pleg.removed((namespace, name))
        log.info("pod removed", object=f"pod/{name}", namespace=namespace, node=self.node, reason=why, action="remove")
