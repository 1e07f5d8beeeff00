"""The node agent (the kubelet's role), one per node: makes the engine run the
pods bound to its node, restarts containers per restartPolicy with Kubernetes'
crash-loop back-off, tears down pods marked for deletion, and reports status.

It learns what the engine has by relisting (one ``list_pods`` call, every
second or so) and compares that with the store; a difference enqueues the pod's
key. A relist decodes only its node's pods, once, and does not recompute the status
of a pod whose engine state and store version are both what the previous relist
found in step. The engine's labels carry ownership, so after a restart of the daemon a
pod that is already running is recognised by its uid and left alone.

Sooner than the relist, the engine's event stream (``on_engine_event``, fed by
the manager's watcher thread) marks a pod's cached state stale and enqueues its
key: the work item is the key, never the event, and the reconcile reads the
pod back from the engine before acting. The relist stays as the safety net for
events that were missed. The relist also finds lone containers (our labels, no
pod of ours; at most every few seconds, as the look costs a relist) and enqueues
each as a ``StrayContainer`` item, which removes it.

A pod whose containers the engine refuses to start (DriverError on start) shows
``RunContainerError`` with the engine's message and is retried with the
crash-loop back-off, not at every look.

Order of teardown: the pod is marked (deletionTimestamp) first, which takes it
out of endpoints; only then are its containers sent SIGTERM, with the grace
period, and its sandbox stopped; then the store object goes, and the engine pod
is removed last, beside whatever waited for the object (a rolling update's next
step). A crash mid-way is finished on restart: before the delete by the marked
object, after it by the orphan rule (an engine pod of ours no object owns).
"""
from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from reconciler.core import objects as o
from reconciler.core.clock import Clock, from_rfc3339, to_rfc3339
from reconciler.core.keys import ANN_COMMIT, LABEL_GRACE, LABEL_TEMPLATE_HASH
from reconciler.core.workqueue import Result
from reconciler.kubelet.env import ConfigError
from reconciler.kubelet.podrequest import build_request, remove_volumes
from reconciler.kubelet.prober import ProbeEvent, Prober, ProbeTarget
from runtime.driver import (
    LABEL_MANAGED,
    DriverError,
    EngineEvent,
    ImagePullError,
    LoneContainer,
    NodeDriver,
    NodeUnreachable,
    PodRequest,
    PodState,
    WatchStatus,
)

log = structlog.get_logger("nodeagent")

Obj = dict[str, Any]

BACKOFF_START = 10.0
BACKOFF_MAX = 300.0
BACKOFF_RESET_AFTER = 600.0  # a container that ran this long forgets its back-off
DRAIN_WAIT_MAX = 5.0  # never hold a teardown longer than this (or the grace period) for the proxy to let go
# A stray container's stop grace unless it carries our grace label: the kubelet's minimum
# grace period, as no workload of ours waits on it.
STRAY_GRACE = 2
# Lone containers are rare and looking for them costs as much as a relist, so not every relist
# looks: at most this often (so one is gone within about this long plus its grace).
LONE_SCAN_INTERVAL = 5.0


@dataclass
class _Backoff:
    delay: float = 0.0
    until: float = 0.0
    message: str = ""  # why, where the status shows it (RunContainerError)


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


class NodeAgent:
    def __init__(self, *, node: str, driver: NodeDriver, store: Any, clock: Clock,
                 volumes_dir: Path | None = None) -> None:
        self.node = node
        self.volumes_dir = volumes_dir or Path(tempfile.gettempdir()) / "reconciler-volumes"
        # Set by the manager: is this pod IP still a backend of a load-balanced Service?
        # Teardown waits (briefly) until it is not, so no request is sent to a stopping pod.
        self.still_serving: Callable[[str], bool] = lambda ip: False
        self._drain_started: dict[tuple[str, str], float] = {}
        self.prober = Prober(clock=clock, on_change=lambda key: self.enqueue(key), on_event=self._probe_event)
        self.driver = driver
        self._store = store
        self._clock = clock
        self._runtime: dict[tuple[str, str], PodState] = {}
        self._listed = False
        self._lock = threading.Lock()
        self._backoff: dict[tuple[str, str, str], _Backoff] = {}
        self._pull_backoff: dict[tuple[str, str], _Backoff] = {}
        self._run_backoff: dict[tuple[str, str], _Backoff] = {}  # the engine refused to start the pod's containers
        # Pods the last relist found in step with the engine: key -> (PodState, resourceVersion).
        self._in_step: dict[tuple[str, str], tuple[PodState, Any]] = {}
        # An engine event said: read this pod back before acting (with the events' actions).
        self._stale: dict[tuple[str, str], set[str]] = {}
        self.lone_scan_interval = LONE_SCAN_INTERVAL
        self._lone_scanned: float | None = None  # clock time of the last look for lone containers
        self.enqueue: Any = lambda key: None  # set by the manager

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
        self.enqueue(key)

    def on_watch_status(self, status: WatchStatus) -> None:
        """The event stream opened or was lost (called on changes only, so each outage logs once)."""
        if status.connected:
            log.info("engine events streaming; drift is seen at once", node=self.node, action="watch")
        else:
            log.warning("engine events unavailable; relying on relists", node=self.node, reason=status.reason,
                        action="watch")

    # -- relist --------------------------------------------------------------------------
    def relist(self) -> list[tuple[str, str] | StrayContainer]:
        """Refresh the engine view; return (and enqueue) the keys whose pods need attention,
        and a StrayContainer item for each lone container."""
        states = self.driver.list_pods()
        runtime = {(s.namespace, s.name): s for s in states}
        with self._lock:
            self._runtime = runtime
            self._listed = True
        dirty: list[tuple[str, str]] = []
        # Pods found in step last time, by (engine state, store resourceVersion): while neither
        # moved, recomputing the status (and the probe specs behind it) finds the same answer.
        # (Prober results and back-offs change without either; they enqueue the pod themselves.)
        before, after = self._in_step, {}
        here: set[tuple[str, str]] = set()
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
            if _comparable_computed(self._status_for(pod, state)) != _comparable(pod.get("status") or {}) or any(
                    c.state != "running" for c in state.containers):
                dirty.append(key)
                continue
            after[key] = (state, version)
        self._in_step = after
        for key in runtime:  # this relist's copy: reconciles replace entries of self._runtime meanwhile
            if key not in here and self._store.get("Pod", *key) is None:
                dirty.append(key)  # an orphan: the reconcile removes it
        for key in dirty:
            self.enqueue(key)
        strays: list[StrayContainer] = []
        now = self._clock.now()
        if self._lone_scanned is None or now - self._lone_scanned >= self.lone_scan_interval:
            strays = [stray_item(c) for c in self.driver.list_lone_containers()]
            self._lone_scanned = now
        for stray in strays:
            self.enqueue(stray)
        return [*dirty, *strays]

    def _absorb_own_starts(self, key: tuple[str, str]) -> None:
        """Forget the start events of the start just made: the read-back that follows it sees
        all they could tell. (They mostly arrive before that read-back has put the running
        containers in the view, where ``on_engine_event`` would have ignored them, and each
        cost a second read-back of the pod beside the rollout's next engine calls.) Any other
        event keeps the pod stale; events after this line are handled as usual."""
        with self._lock:
            if self._stale.get(key, {"start"}) <= {"start"}:
                self._stale.pop(key, None)

    def _state(self, key: tuple[str, str]) -> PodState | None:
        with self._lock:
            return self._runtime.get(key)

    def _refresh(self) -> None:
        states = self.driver.list_pods()
        with self._lock:
            self._runtime = {(s.namespace, s.name): s for s in states}
            self._listed = True

    def _refresh_one(self, key: tuple[str, str]) -> PodState | None:
        """Read back only the pod just acted on; the periodic relist covers the rest."""
        state = self.driver.pod_state(namespace=key[0], name=key[1])
        with self._lock:
            if state is None:
                self._runtime.pop(key, None)
            else:
                self._runtime[key] = state
        return state

    # -- reconcile -------------------------------------------------------------------------
    def reconcile(self, key: tuple[str, str] | StrayContainer) -> Result | None:
        if isinstance(key, StrayContainer):
            self._remove_stray(key)
            return None
        namespace, name = key
        with self._lock:
            stale = self._stale.pop(key, None) is not None
        if not self._listed:
            self._refresh()
        # After an engine event the cached state predates it: read this one pod back.
        state = self._refresh_one(key) if stale else self._state(key)
        pod = self._store.get("Pod", namespace, name)
        if pod is None:
            if state is not None and state.labels.get("reconciler.io/node", self.node) == self.node:
                self._teardown(namespace, name, grace=int(state.labels.get("reconciler.io/grace", "10")), why="orphan")
                remove_volumes(uid=state.uid or "nouid", volumes_dir=self.volumes_dir)
                self._forget(namespace, name)
            return None
        spec = pod.get("spec") or {}
        if spec.get("nodeName") != self.node:
            return None
        if o.is_terminating(pod):
            ip = (pod.get("status") or {}).get("podIP")
            if state is not None and ip and self.still_serving(ip):
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
                # Past any drift-counting wrapper (which calls a removal of a pod the store
                # does not hold a stray, and lists the engine to tell): this one is ours.
                self._remove(namespace, name, why="deleted", engine=getattr(self.driver, "wrapped", self.driver))
            remove_volumes(uid=pod["metadata"].get("uid", "nouid"), volumes_dir=self.volumes_dir)
            self._forget(namespace, name)
            return None
        if state is not None and state.uid != pod["metadata"].get("uid"):
            self._teardown(namespace, name, grace=0, why="replaced")
            state = None
        requeue: float | None = None
        if state is None:
            requeue = self._start_new(pod)
            self._absorb_own_starts(key)
            state = self._refresh_one(key)
        else:
            requeue = self._restart_exited(pod, state)
            if requeue is None and self._restart_unhealthy(pod, state):
                requeue = 0.0
            if requeue == 0.0:
                state = self._refresh_one(key)
                requeue = None
        self._write_status(pod, state)
        return Result(requeue_after=requeue) if requeue else None

    # -- starting --------------------------------------------------------------------------
    def _start_new(self, pod: Obj) -> float | None:
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        pull_key = (namespace, name)
        backoff = self._pull_backoff.get(pull_key)
        now = self._clock.now()
        if backoff and backoff.until > now:
            return backoff.until - now
        try:
            for container in pod["spec"].get("containers") or []:
                self.driver.pull(container["image"], policy=container.get("imagePullPolicy", "IfNotPresent"))
        except ImagePullError as exc:
            b = self._pull_backoff.setdefault(pull_key, _Backoff())
            b.delay = min(max(b.delay * 2, BACKOFF_START), BACKOFF_MAX)
            b.until = now + b.delay
            self._event(pod, "Warning", "Failed", f"Failed to pull image: {exc}")
            self._set_waiting(pod, reason="ImagePullBackOff" if b.delay > BACKOFF_START else "ErrImagePull", message=str(exc))
            return b.delay
        self._pull_backoff.pop(pull_key, None)
        request, retry = self._create_and_start(pod)
        if request is None or retry is not None:
            return retry
        self._event(pod, "Normal", "Started", f"Started pod on {self.node} at {request.pod_ip}")
        log.info("pod started", object=f"pod/{name}", namespace=namespace, node=self.node, pod_ip=request.pod_ip,
                 commit=o.annotations(pod).get(ANN_COMMIT, ""), action="start")
        return None

    def _labels(self, pod: Obj) -> dict[str, str]:
        """Ownership labels for the engine: enough to rebuild the pod's place from podman alone."""
        spec = pod.get("spec") or {}
        lbls = {
            "reconciler.io/node": self.node,
            "reconciler.io/grace": str(spec.get("terminationGracePeriodSeconds", 30)),
        }
        rs = o.owner_name(pod, "ReplicaSet")
        if rs:
            lbls["reconciler.io/replicaset"] = rs
            tmpl_hash = o.labels(pod).get(LABEL_TEMPLATE_HASH)
            if tmpl_hash:
                lbls["reconciler.io/pod-template-hash"] = tmpl_hash
                lbls["reconciler.io/deployment"] = rs[: -(len(tmpl_hash) + 1)] if rs.endswith("-" + tmpl_hash) else ""
        commit = o.annotations(pod).get(ANN_COMMIT)
        if commit:
            lbls["reconciler.io/commit"] = commit
        return lbls

    def _restart_exited(self, pod: Obj, state: PodState) -> float | None:
        """Restart exited containers per restartPolicy, after the crash-loop back-off.
        Returns 0.0 if something was started, a delay to come back, or None."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        policy = pod["spec"].get("restartPolicy", "Always")
        now = self._clock.now()
        started_any = False
        wait: float | None = None
        present = {c.name for c in state.containers}
        missing = [c["name"] for c in pod["spec"].get("containers") or [] if c["name"] not in present]
        if missing:
            # Drift: a container removed behind our back (podman rm -f). The driver's
            # create_pod with the same uid recreates exactly the missing ones.
            request, retry = self._create_and_start(pod)
            if request is None or retry is not None:
                return retry
            known = {cs.get("name") for cs in (pod.get("status") or {}).get("containerStatuses") or []
                     if cs.get("containerID")}
            for cname in missing:
                if cname not in known:
                    continue  # never ran: the daemon died between creating the pod and this container
                self._bump_restart(pod, cname)
                self._event(pod, "Warning", "DriftCorrected", f"Container {cname} was removed outside reconciler; recreated")
                log.info("drift corrected", object=f"pod/{name}", namespace=namespace, container=cname,
                         action="recreate")
            started_any = True
        for c in state.containers:
            if c.state == "running":
                b = self._backoff.get((namespace, name, c.name))
                started = from_rfc3339(c.started_at)
                if b and started and now - started > BACKOFF_RESET_AFTER:
                    self._backoff.pop((namespace, name, c.name), None)
                continue
            if c.state == "waiting":
                # Created but never started (e.g. the daemon died between create and start,
                # or the engine refused to start it: then after the back-off).
                refused = self._start_container(pod, c.name)
                if refused is not None:
                    wait = min(wait or refused, refused)
                    continue
                started_any = True
                continue
            if policy == "Never" or (policy == "OnFailure" and c.exit_code == 0):
                continue
            b = self._backoff.setdefault((namespace, name, c.name), _Backoff())
            if b.until > now:
                wait = min(wait or b.until - now, b.until - now)
                continue
            refused = self._start_container(pod, c.name)
            if refused is not None:
                wait = min(wait or refused, refused)
                continue
            self._bump_restart(pod, c.name)
            b.delay = min(max(b.delay * 2, BACKOFF_START), BACKOFF_MAX)
            b.until = now + b.delay
            started_any = True
            self._event(pod, "Warning" if c.exit_code else "Normal", "BackOff" if c.exit_code else "Restarted",
                        f"Restarted container {c.name} (exit code {c.exit_code}); next restart no sooner than {int(b.delay)}s")
        if started_any:
            return 0.0
        return wait

    def _create_and_start(self, pod: Obj) -> tuple[PodRequest | None, float | None]:
        """Create the engine pod (or the containers it lacks: the driver creates only what is
        missing for the same uid) and start it. Returns the request and None when it runs, else
        the seconds until the next attempt (request None: the pod's config cannot be built yet)."""
        try:
            request = build_request(pod=pod, store=self._store, volumes_dir=self.volumes_dir, labels=self._labels(pod))
        except ConfigError as exc:
            self._event(pod, "Warning", "Failed", f"Error: {exc}")
            self._set_waiting(pod, reason="CreateContainerConfigError", message=str(exc))
            return None, 5.0
        self.driver.create_pod(request)
        return request, self._start_pod(pod)

    def _start_pod(self, pod: Obj) -> float | None:
        """Start the pod's containers; None when done, else seconds until the next attempt."""
        return self._start(pod, container=None)

    def _start_container(self, pod: Obj, container: str) -> float | None:
        """(Re)start one container; None when done, else seconds until the next attempt."""
        return self._start(pod, container=container)

    def _start(self, pod: Obj, *, container: str | None) -> float | None:
        """A start the engine refuses (bad command, missing mount...) is RunContainerError,
        retried with the crash-loop back-off: it will most likely fail the same way again.
        An unreachable engine is the node's problem, not the pod's, so it is raised."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        key = (namespace, name)
        now = self._clock.now()
        b = self._run_backoff.get(key)
        if b is not None and b.until > now:
            return b.until - now
        try:
            if container is None:
                self.driver.start_pod(namespace=namespace, name=name)
            else:
                self.driver.start_container(namespace=namespace, name=name, container=container)
        except NodeUnreachable:
            raise
        except DriverError as exc:
            b = self._run_backoff.setdefault(key, _Backoff())
            b.delay = min(max(b.delay * 2, BACKOFF_START), BACKOFF_MAX)
            b.until, b.message = now + b.delay, str(exc)
            self._event(pod, "Warning", "Failed", f"Error: {exc}")
            log.warning("container start refused", object=f"pod/{name}", namespace=namespace, node=self.node,
                        container=container or "*", error=str(exc), retry_in=b.delay, action="start")
            return b.delay
        self._run_backoff.pop(key, None)
        return None

    def _remove_stray(self, stray: StrayContainer) -> None:
        """Remove a lone container: it carries our labels, but no pod of ours holds it."""
        if not self.driver.remove_lone_container(container_id=stray.container_id, grace_seconds=stray.grace_seconds):
            return  # gone already (a second look at the same one, or removed by hand)
        log.info("stray container removed", node=self.node, container=stray.name, id=stray.container_id[:12],
                 action="remove")
        self._store.record_event(kind="Node", namespace="", name=self.node, type="Warning",
                                 reason="RemovedStrayContainer",
                                 message=f"Removed stray container {stray.name or stray.container_id[:12]}: it "
                                         f"carries {LABEL_MANAGED}=true but no object owns it")

    def _bump_restart(self, pod: Obj, container: str) -> None:
        """restartCount lives only in the store: the engine's container is the same
        one started again, so the engine cannot count our restarts for us."""
        def mutate(cur: Obj) -> Obj:
            statuses = cur.setdefault("status", {}).setdefault("containerStatuses", [])
            for cs in statuses:
                if cs.get("name") == container:
                    cs["restartCount"] = int(cs.get("restartCount", 0)) + 1
                    return cur
            statuses.append({"name": container, "restartCount": 1})
            return cur

        self._store.update("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"], mutate)

    def _restart_unhealthy(self, pod: Obj, state: PodState) -> bool:
        """Restart containers whose liveness (or startup) probe ran out of attempts."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        grace = int((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        restarted = False
        for c in state.containers:
            if c.state != "running":
                continue
            probe_state = self.prober.state(pod_key=(namespace, name), container=c.name)
            if not probe_state.restart_needed:
                continue
            self._event(pod, "Normal", "Killing",
                        f"Container {c.name} failed its liveness or startup probe, will be restarted")
            self.driver.stop_container(namespace=namespace, name=name, container=c.name, grace_seconds=grace)
            self.driver.start_container(namespace=namespace, name=name, container=c.name)
            self._bump_restart(pod, c.name)
            log.info("container restarted", object=f"pod/{name}", namespace=namespace, container=c.name,
                     reason=probe_state.message, action="restart")
            restarted = True
        return restarted

    def _sync_probes(self, pod: Obj, state: PodState | None) -> None:
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        running = {c.name: c for c in (state.containers if state else ()) if c.state == "running"}
        pod_ip = state.pod_ip if state else ""
        for spec_c in (pod.get("spec") or {}).get("containers") or []:
            cname = spec_c["name"]
            c = running.get(cname)
            ports = {p["name"]: int(p["containerPort"]) for p in spec_c.get("ports") or [] if p.get("name")}
            target = ProbeTarget(pod_ip=pod_ip, ports_by_name=ports, exec_fn=self._exec_fn(namespace, name, cname))
            self.prober.sync_container(pod_key=(namespace, name), container=cname, spec=spec_c, target=target,
                                       started_at=from_rfc3339(c.started_at) if c else None, running=c is not None)

    def _exec_fn(self, namespace: str, name: str, container: str) -> Callable[[list[str], float], tuple[int, str]]:
        def run(command: list[str], timeout: float) -> tuple[int, str]:
            code, output = self.driver.exec(namespace=namespace, name=name, container=container,
                                            command=command, timeout=timeout)
            if code == -1 and "timed out" in output:
                raise TimeoutError(output)
            return code, output

        return run

    def _probe_event(self, event: ProbeEvent) -> None:
        namespace, name = event.pod_key
        self._store.record_event(kind="Pod", namespace=namespace, name=name, type=event.type, reason=event.reason,
                                 message=event.message)

    # -- teardown ----------------------------------------------------------------------------
    def _teardown(self, namespace: str, name: str, *, grace: int, why: str) -> None:
        self._stop(namespace, name, grace=grace)
        self._remove(namespace, name, why=why)

    def _stop(self, namespace: str, name: str, *, grace: int) -> bool:
        """SIGTERM with the grace period, then the sandbox; False (logged) when the engine refused
        or did not answer, as the removal that follows kills anyway."""
        try:
            self.driver.stop_pod(namespace=namespace, name=name, grace_seconds=grace)
        except DriverError as exc:
            log.warning("stop failed", object=f"pod/{name}", namespace=namespace, error=str(exc))
            return False
        return True

    def _remove(self, namespace: str, name: str, *, why: str, engine: NodeDriver | None = None) -> None:
        (engine or self.driver).remove_pod(namespace=namespace, name=name)
        with self._lock:
            self._runtime.pop((namespace, name), None)
        log.info("pod removed", object=f"pod/{name}", namespace=namespace, node=self.node, reason=why, action="remove")

    def _forget(self, namespace: str, name: str) -> None:
        self.prober.forget_pod((namespace, name))
        self._pull_backoff.pop((namespace, name), None)
        self._run_backoff.pop((namespace, name), None)
        for k in [k for k in self._backoff if k[0] == namespace and k[1] == name]:
            self._backoff.pop(k, None)

    # -- status --------------------------------------------------------------------------------
    def _status_for(self, pod: Obj, state: PodState | None) -> dict[str, Any]:
        """The pod status the engine implies (without timestamps that only we set)."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        previous = {cs.get("name"): cs for cs in (pod.get("status") or {}).get("containerStatuses") or []}
        policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
        now = self._clock.now()
        statuses = []
        running = terminated = succeeded = ready_count = 0
        by_name = {c.name: c for c in (state.containers if state else ())}
        refused = self._run_backoff.get((namespace, name))
        self._sync_probes(pod, state)
        for spec_c in (pod.get("spec") or {}).get("containers") or []:
            cname = spec_c["name"]
            c = by_name.get(cname)
            restarts = int(previous.get(cname, {}).get("restartCount", 0))
            entry: dict[str, Any] = {"name": cname, "image": spec_c.get("image", ""), "restartCount": restarts,
                                     "ready": False, "started": False}
            if refused is not None and (c is None or c.state != "running"):
                # The engine refused to start it: say why, as the kubelet does, until a start works.
                entry["state"] = {"waiting": {"reason": "RunContainerError", "message": refused.message}}
                if c is not None and c.state == "terminated":
                    entry["lastState"] = {"terminated": {
                        "exitCode": c.exit_code, "reason": c.reason or ("Completed" if c.exit_code == 0 else "Error"),
                        "startedAt": c.started_at, "finishedAt": c.finished_at}}
                if c is not None:
                    entry["containerID"] = f"podman://{c.container_id}"
            elif c is None:
                entry["state"] = {"waiting": {"reason": "ContainerCreating"}}
            elif c.state == "running":
                running += 1
                probes = self.prober.state(pod_key=(namespace, name), container=cname)
                ready_count += 1 if probes.ready else 0
                entry.update(ready=probes.ready, started=probes.started, containerID=f"podman://{c.container_id}",
                             state={"running": {"startedAt": c.started_at}})
            elif c.state == "terminated":
                terminated += 1
                if c.exit_code == 0:
                    succeeded += 1
                term = {"exitCode": c.exit_code, "reason": c.reason or ("Completed" if c.exit_code == 0 else "Error"),
                        "startedAt": c.started_at, "finishedAt": c.finished_at}
                b = self._backoff.get((namespace, name, cname))
                restartable = policy == "Always" or (policy == "OnFailure" and c.exit_code != 0)
                if restartable and b and b.until > now:
                    entry["state"] = {"waiting": {"reason": "CrashLoopBackOff",
                                                  "message": f"back-off {int(b.delay)}s restarting failed container={cname}"}}
                    entry["lastState"] = {"terminated": term}
                else:
                    entry["state"] = {"terminated": term}
                entry["containerID"] = f"podman://{c.container_id}"
            else:
                entry["state"] = {"waiting": {"reason": c.reason or "ContainerCreating"}}
            statuses.append(entry)
        total = len(statuses)
        if state is None:
            phase = "Pending"
        elif total and terminated == total and (policy == "Never" or (policy == "OnFailure" and succeeded == total)):
            phase = "Succeeded" if succeeded == total else "Failed"
        elif running or any(cs.get("restartCount") for cs in statuses) or terminated:
            phase = "Running"
        else:
            phase = "Pending"
        ready = total > 0 and ready_count == total
        return {
            "phase": phase,
            "podIP": state.pod_ip if state else None,
            "ready": ready,
            "containerStatuses": statuses,
        }

    def _write_status(self, pod: Obj, state: PodState | None) -> None:
        computed = self._status_for(pod, state)
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        now = self._clock.now()

        def mutate(cur: Obj) -> Obj | None:
            if o.is_terminating(cur):
                return None
            status = cur.setdefault("status", {})
            before = _comparable(status)
            stored_counts = {cs["name"]: cs.get("restartCount", 0) for cs in status.get("containerStatuses") or []}
            for cs in computed["containerStatuses"]:
                cs["restartCount"] = int(stored_counts.get(cs["name"], 0))
            status["phase"] = computed["phase"]
            if computed["podIP"]:
                status["podIP"] = computed["podIP"]
                status["podIPs"] = [{"ip": computed["podIP"]}]
                status["hostIP"] = computed["podIP"]
            status["containerStatuses"] = computed["containerStatuses"]
            if state is not None and not status.get("startTime"):
                status["startTime"] = to_rfc3339(now)
            flag = "True" if computed["ready"] else "False"
            latest_start = max((from_rfc3339(c.started_at) or 0.0 for c in (state.containers if state else ())
                                if c.state == "running"), default=0.0)
            for ctype in ("Ready", "ContainersReady"):
                cond = o.get_condition(status, ctype)
                if flag == "True" and cond and cond.get("status") == "True" and \
                        latest_start > (from_rfc3339(cond.get("lastTransitionTime")) or 0.0):
                    # A container restarted between two looks: its readiness starts again
                    # (minReadySeconds counts from the restart, not from the first start).
                    o.remove_condition(status, ctype)
            o.set_condition(status, {"type": "Initialized", "status": "True"}, now=now)
            o.set_condition(status, {"type": "ContainersReady", "status": flag}, now=now)
            o.set_condition(status, {"type": "Ready", "status": flag}, now=now)
            if _comparable(status) == before:
                return None
            return cur

        self._store.update("Pod", namespace, name, mutate)

    def _set_waiting(self, pod: Obj, *, reason: str, message: str) -> None:
        def mutate(cur: Obj) -> Obj | None:
            status = cur.setdefault("status", {})
            statuses = [{"name": c["name"], "image": c.get("image", ""), "ready": False, "restartCount": 0,
                         "state": {"waiting": {"reason": reason, "message": message}}}
                        for c in (cur.get("spec") or {}).get("containers") or []]
            if status.get("containerStatuses") == statuses:
                return None
            status["containerStatuses"] = statuses
            status["phase"] = "Pending"
            return cur

        self._store.update("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"], mutate)

    def _event(self, pod: Obj, etype: str, reason: str, message: str) -> None:
        self._store.record_event(kind="Pod", namespace=pod["metadata"]["namespace"], name=pod["metadata"]["name"],
                                 uid=pod["metadata"].get("uid", ""), type=etype, reason=reason, message=message)


def _comparable(status: dict[str, Any]) -> dict[str, Any]:
    """The parts of a pod status the engine determines, for change detection."""
    ready = o.get_condition(status, "Ready")
    return {
        "phase": status.get("phase"),
        "podIP": status.get("podIP"),
        "ready": bool(ready and ready.get("status") == "True"),
        "containerStatuses": [{k: v for k, v in cs.items() if k != "restartCount"}
                              for cs in status.get("containerStatuses") or []],
    }


def _comparable_computed(computed: dict[str, Any]) -> dict[str, Any]:
    return {
        "phase": computed["phase"],
        "podIP": computed["podIP"],
        "ready": computed["ready"],
        "containerStatuses": [{k: v for k, v in cs.items() if k != "restartCount"}
                              for cs in computed["containerStatuses"]],
    }
