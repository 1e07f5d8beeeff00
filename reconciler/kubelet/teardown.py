"""Stopping and removing engine pods, in the order that keeps traffic and rollouts safe.

Order of teardown: the pod is marked (deletionTimestamp) first, which takes it out of
endpoints; while the service proxy still sends to its IP, the stop waits (briefly);
only then are its containers sent SIGTERM, with the grace period (in parallel: one
grace period for the pod, as in Kubernetes). Once they have exited the pod is
terminated and its store object goes; the sandbox (which kept the pod's network while
the apps drained, the Kubernetes order) is removed after that, with the engine pod,
beside whatever waited for the object (a rolling update's next step): stopping it
first cost a rollout ~0.1 s a step for nothing anyone waits on. A crash mid-way is
finished on restart: before the delete by the marked object, after it by the orphan
rule (an engine pod of ours no object owns, removed as a stray).

The pod IP: with the object gone the scheduler may hand its address to a new pod
(it gives the lowest free one, so the next surge pod of a rollout gets it) while the
old sandbox still holds it in netavark's IPAM, where a second holder is refused
("IPAM error ... already allocated": the new pod would be Failed). So the IP stays
held here (``ReleasingIPs``) from before the delete until the engine pod is removed,
and the node agent waits for it before it creates a pod with that address. The
agent that removes is the one that creates on this node, so this covers every
placement; only a crash between the two leaves the address held until the orphan
rule removes the old pod (the new pod may then fail once and be replaced).

Also here: a pod replaced under the same name (another uid), and lone containers
carrying our labels (``StrayContainer`` items from the relist).

Why a module of its own: this is where the node agent destroys things, and each step's
order is a promise to another part (endpoints, the proxy, the rollout); it reports the
removals that correct drift (a stray pod, a stray container) to ``on_drift``.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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

# Never hold a teardown longer than this (or the grace period) for the proxy to let go. Normally
# it lets go within milliseconds of the Endpoints update; what can hold it longer is a control plane
# without a leader (its endpoints controller is the leader's): a leader killed between marking a
# pod for deletion and updating the Endpoints leaves the pod a backend until the next leader's first
# pass — up to leaseDuration (15 s) + the takeover (5 s) + a node agent's 2 s list. SIGTERM before
# that sends the Service's traffic to an app that has exited (refused connections, seen in the HA
# test at 5 s). Kubernetes has the same window and leaves it to the app's preStop/grace period.
DRAIN_WAIT_MAX = 25.0
# A new pod waits at most this long for a removal still holding its IP (a removal slower than this
# has failed or hung; the create then goes ahead and the engine says whether the address is free).
RELEASE_WAIT_MAX = 30.0


class ReleasingIPs:
    """Pod IPs whose engine pod is being removed: held until the removal returns; thread-safe."""

    def __init__(self) -> None:
        self._held: Counter[str] = Counter()
        self._waiting: Counter[str] = Counter()
        self._changed = threading.Condition()

    def hold(self, ips: set[str]) -> None:
        with self._changed:
            self._held.update(ip for ip in ips if ip)

    def release(self, ips: set[str]) -> None:
        with self._changed:
            self._held.subtract(ip for ip in ips if ip)
            self._held += Counter()  # drop the zeros
            self._changed.notify_all()

    def held(self, ip: str) -> bool:
        with self._changed:
            return self._held[ip] > 0

    def waiting(self, ip: str) -> int:
        """How many creates wait for ``ip`` now (for tests)."""
        with self._changed:
            return self._waiting[ip]

    def wait(self, ip: str, *, timeout: float = RELEASE_WAIT_MAX) -> bool:
        """Block until no removal holds ``ip``; False if it is still held after ``timeout``."""
        if not ip:
            return True
        deadline = time.monotonic() + timeout
        with self._changed:
            self._waiting[ip] += 1
            try:
                while self._held[ip] > 0:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._changed.wait(left)
                return True
            finally:
                self._waiting[ip] -= 1


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
        self.releasing = ReleasingIPs()

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
        stopped = state is None or self._stop_apps(namespace, name, state, grace=grace)
        if not stopped:
            # The stop failed: only the removal (which kills) proves nothing runs, so it
            # goes first and the object after it, as a retry would find it.
            self._remove(namespace, name, why="deleted")
        # Otherwise the object goes once the app containers have exited, as the kubelet
        # deletes it once the pod is terminated, and before the sandbox and the engine pod
        # are removed: a rolling update's next step (which waits for this pod to be gone)
        # need not wait for the engine's clean-up too. The IP stays held until then (see
        # the module docstring). A crash before the removal leaves an engine pod no object
        # owns, which the agent removes as an orphan.
        removing = state is not None and stopped
        held = {address for address in (state.pod_ip, ip or "") if address} if state is not None and removing else set()
        self.releasing.hold(held)
        try:
            self._store.delete("Pod", namespace, name)
            if removing:
                self._remove(namespace, name, why="deleted")
        finally:
            self.releasing.release(held)
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

    def _stop_apps(self, namespace: str, name: str, state: PodState, *, grace: int) -> bool:
        """SIGTERM, with the grace period, every container the engine shows running, in parallel,
        and wait until they exited; the sandbox keeps running (the removal that follows stops it).
        False (logged) when the engine refused or did not answer, as the removal kills anyway."""
        running = [c.name for c in (*state.init_containers, *state.containers) if c.state == "running"]

        def stop(container: str) -> None:
            self._driver.stop_container(namespace=namespace, name=name, container=container, grace_seconds=grace)

        try:
            if len(running) == 1:
                stop(running[0])  # the common case: no thread for one call
            elif running:
                with ThreadPoolExecutor(max_workers=min(len(running), 16)) as pool:
                    for future in [pool.submit(stop, c) for c in running]:
                        future.result()
        except DriverError as exc:
            log.warning("stop failed", object=f"pod/{name}", namespace=namespace, error=str(exc))
            return False
        return True

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
