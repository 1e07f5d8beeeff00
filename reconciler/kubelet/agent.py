"""The node agent (the kubelet's pod worker), one per node: makes the engine run the
pods bound to its node, restarts containers per restartPolicy with Kubernetes'
crash-loop back-off, tears down pods marked for deletion, and reports status.

``reconcile(key)`` is one look at one pod: it compares the Pod object with what the
engine holds of it and makes one step towards the object. Its parts live beside it:

- ``pleg``: the engine view and which keys to look at (relists, engine events, lone
  containers);
- ``status``: from engine state to the Pod's status;
- ``teardown``: stopping and removing, in the order endpoints and rollouts rely on;
- ``podrequest`` and ``env``: from the pod spec to the engine's request;
- ``prober``: the probes, whose verdicts feed readiness and liveness restarts.

What stays here is starting: pulling images (ImagePullBackOff), creating and starting
the pod, running its init containers in order before the app containers
(``initcontainers``: what step the pod is at; here: doing it), and restarting containers.
A container the driver refuses to create for its configuration (runAsNonRoot and a root
user: ``ContainerConfigError``) shows CreateContainerConfigError and is tried again later,
like a missing ConfigMap. A restart is what Kubernetes makes it: a NEW
container from the image in the same pod (``NodeDriver.recreate_container``: a fresh
writable layer, volumes kept), never the old one started again, so what a container
broke in its own filesystem dies with it. Every restart, whatever its cause (the
container exited or was stopped or killed by hand, removed by hand, or killed because
its liveness or startup probe gave up), goes through one per-container crash-loop
back-off (``core/backoff.py``: the first at once, then 10 s doubling to 5 min,
forgotten after 10 min of running). A liveness failure only kills the container (as
the kubelet does); the restart that follows is an ordinary one. A pod whose containers
the engine refuses to start (DriverError on start) shows ``RunContainerError`` with the
engine's message and is retried with the same back-off, not at every look.

Wiring: what the agent calls out to comes in through its constructor: ``enqueue`` (its
work queue), ``still_serving`` (the service proxy: is this IP still a backend?) and
``on_drift`` (who counts drift corrections, ``drift.py``). Each is also an attribute that
may be set after construction, until every builder passes them.
"""
from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Hashable
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from reconciler.core import objects as o
from reconciler.core.backoff import BACKOFF_RESET_AFTER, BACKOFF_START, Backoff
from reconciler.core.clock import Clock, from_rfc3339
from reconciler.core.keys import ANN_COMMIT
from reconciler.core.workqueue import Result
from reconciler.kubelet import drift
from reconciler.kubelet import initcontainers as init
from reconciler.kubelet import status as podstatus
from reconciler.kubelet.env import ConfigError
from reconciler.kubelet.pleg import PodLifecycleEventGenerator, StrayContainer
from reconciler.kubelet.podrequest import build_request, engine_labels
from reconciler.kubelet.prober import ProbeEvent, Prober, ProbeTarget
from reconciler.kubelet.teardown import PodTeardown
from runtime.driver import (
    ContainerConfigError,
    ContainerState,
    DriverError,
    EngineEvent,
    ImagePullError,
    NodeDriver,
    NodeUnreachable,
    PodIPConflict,
    PodRequest,
    PodState,
    WatchStatus,
)

log = structlog.get_logger("nodeagent")

CONFIG_RETRY = 5.0  # seconds until a pod whose config cannot be made (CreateContainerConfigError) is tried again

Obj = dict[str, Any]
PodKey = tuple[str, str]


class NodeAgent:
    def __init__(self, *, node: str, driver: NodeDriver, store: Any, clock: Clock,
                 volumes_dir: Path | None = None, enqueue: Callable[[Hashable], None] | None = None,
                 still_serving: Callable[[str], bool] | None = None,
                 on_drift: drift.OnDrift = drift.ignore) -> None:
        self.node = node
        self.volumes_dir = volumes_dir or Path(tempfile.gettempdir()) / "reconciler-volumes"
        self.driver = driver
        self._store = store
        self._clock = clock
        # The work queue's add: a pod key, or a StrayContainer item.
        self.enqueue: Callable[[Hashable], None] = enqueue or (lambda key: None)
        # Is this pod IP still a backend of a load-balanced Service? Teardown waits
        # (briefly) until it is not, so no request is sent to a stopping pod.
        self.still_serving: Callable[[str], bool] = still_serving or (lambda ip: False)
        self.on_drift: drift.OnDrift = on_drift
        # The parts call back through these attributes (not the values given now), so a
        # builder that still sets them after construction is followed.
        self.prober = Prober(clock=clock, on_change=self._probe_changed, on_event=self._probe_event)
        self._syncing = threading.local()  # .key: the pod whose probes _sync_probes is telling the prober
        self.pleg = PodLifecycleEventGenerator(
            node=node, driver=driver, store=store, clock=clock, enqueue=lambda key: self.enqueue(key),
            in_step=self._in_step)
        self.teardown = PodTeardown(
            node=node, driver=driver, store=store, clock=clock, pleg=self.pleg, volumes_dir=self.volumes_dir,
            still_serving=lambda ip: self.still_serving(ip), forget=self._forget,
            on_drift=lambda reason: self.on_drift(reason))
        self._backoff: dict[tuple[str, str, str], Backoff] = {}  # crash loop, per container
        self._pull_backoff: dict[PodKey, Backoff] = {}
        self._run_backoff: dict[PodKey, Backoff] = {}  # the engine refused to start the pod's containers
        # The container (id, per pod container) killed for a failed liveness/startup probe: restarted
        # under OnFailure whatever its exit code (a SIGTERM'd process may well exit 0), as in Kubernetes.
        self._probe_killed: dict[tuple[str, str, str], str] = {}
        # Pods (by uid) this node gave up on (their IP is held by something else): Failed, and
        # left to their owner to replace; nothing more is done for them here.
        self._given_up: dict[PodKey, str] = {}

    # -- the engine view (pleg.py) -------------------------------------------------------------
    def on_engine_event(self, event: EngineEvent) -> None:
        """Something happened to one of the pod's containers: look at the pod again, now."""
        self.pleg.on_engine_event(event)

    def on_watch_status(self, status: WatchStatus) -> None:
        self.pleg.on_watch_status(status)

    def relist(self) -> list[PodKey | StrayContainer]:
        """Refresh the engine view; return (and enqueue) the keys whose pods need attention."""
        return self.pleg.relist()

    @property
    def lone_scan_interval(self) -> float:
        return self.pleg.lone_scan_interval

    @lone_scan_interval.setter
    def lone_scan_interval(self, seconds: float) -> None:
        self.pleg.lone_scan_interval = seconds

    # -- reconcile -------------------------------------------------------------------------
    def reconcile(self, key: PodKey | StrayContainer) -> Result | None:
        if isinstance(key, StrayContainer):
            self.teardown.stray(key)
            return None
        namespace, name = key
        state = self.pleg.current(key)
        pod = self._store.get("Pod", namespace, name)
        if pod is None:
            if state is not None:
                self.teardown.orphan(key, state)
            return None
        spec = pod.get("spec") or {}
        if spec.get("nodeName") != self.node:
            return None
        if o.is_terminating(pod):
            return self.teardown.deleted(pod, state)
        if state is not None and state.uid != pod["metadata"].get("uid"):
            self.teardown.teardown(namespace, name, grace=0, why="replaced")
            state = None
        if self._given_up.get(key) == pod["metadata"].get("uid"):
            return None
        requeue: float | None = None
        held = False  # the start wrote why the pod waits (ErrImagePull...): nothing in the engine says more
        started: PodRequest | None = None  # the pod this look started, reported after its status
        if state is None:
            requeue, held, started = self._start_new(pod)
            if self._given_up.get(key) == pod["metadata"].get("uid"):
                return None
            self.pleg.absorb_own_starts(key)
            state = self.pleg.refresh(key)
        elif not init.initialised(pod, state):
            # Init containers still to run: the app containers do not exist yet, nothing to restart.
            requeue = self._run_init(pod, state)
            self.pleg.absorb_own_restarts(key)
            state = self.pleg.refresh(key)
        else:
            if self._kill_unhealthy(pod, state):
                # Killed, not restarted: the restart below is an ordinary one, back-off included.
                state = self.pleg.refresh(key)
            if state is not None:
                requeue = self._restart_exited(pod, state)
            if requeue == 0.0:
                self.pleg.absorb_own_restarts(key)
                state = self.pleg.refresh(key)
                requeue = None
        if not (held and state is None):
            podstatus.write_status(self._store, pod, state, self._status_for(pod, state), now=self._clock.now())
        init.write_status(self._store, pod, state, now=self._clock.now(),
                          backoff=lambda cname: self._backoff.get((namespace, name, cname)))
        if started is not None:
            # After the status write: that write is what the pod's owners wait for (a rolling
            # update's next step), and the Event is a store transaction of its own.
            self._event(pod, "Normal", "Started", f"Started pod on {self.node} at {started.pod_ip}")
            log.info("pod started", object=f"pod/{name}", namespace=namespace, node=self.node,
                     pod_ip=started.pod_ip, commit=o.annotations(pod).get(ANN_COMMIT, ""), action="start")
        return Result(requeue_after=requeue) if requeue else None

    # -- starting --------------------------------------------------------------------------
    def _start_new(self, pod: Obj) -> tuple[float | None, bool, PodRequest | None]:
        """Pull, create and start a pod the engine does not have. Returns the seconds until the
        next look (None: none needed), whether the pod's status now says why it waits (then
        the status the engine implies, "ContainerCreating", must not overwrite it), and the
        request of a pod that runs now (None if it does not: waiting, refused or given up)."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        pull_key = (namespace, name)
        backoff = self._pull_backoff.get(pull_key)
        now = self._clock.now()
        if backoff and backoff.waiting(now):
            return backoff.remaining(now), True, None
        try:
            for container in [*init.specs(pod), *(pod["spec"].get("containers") or [])]:
                self.driver.pull(container["image"], policy=container.get("imagePullPolicy", "IfNotPresent"))
        except ImagePullError as exc:
            b = self._pull_backoff.setdefault(pull_key, Backoff())
            b.step(now)
            self._event(pod, "Warning", "Failed", f"Failed to pull image: {exc}")
            podstatus.set_waiting(self._store, pod, reason="ImagePullBackOff" if b.delay > BACKOFF_START
                                  else "ErrImagePull", message=str(exc))
            return b.delay, True, None
        self._pull_backoff.pop(pull_key, None)
        request, retry = self._create_and_start(pod, state=None)
        if request is None:
            return retry, True, None
        if retry is not None or self._given_up.get(pull_key) == pod["metadata"].get("uid"):
            # Not running: refused (retried later), or given up (Failed; no "Started" for it).
            return retry, False, None
        return None, False, request

    def _labels(self, pod: Obj) -> dict[str, str]:
        """Ownership labels for the engine (the benchmark builds requests with them)."""
        return engine_labels(pod, node=self.node)

    def _restart_exited(self, pod: Obj, state: PodState) -> float | None:
        """Restart containers that exited, were stopped, killed or removed, per restartPolicy and
        after the crash-loop back-off; start those created but never started.
        Returns 0.0 if something was started, a delay to come back, or None."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        policy = pod["spec"].get("restartPolicy", "Always")
        now = self._clock.now()
        started_any = False
        wait: float | None = None

        def later(seconds: float) -> None:
            nonlocal wait
            wait = seconds if wait is None else min(wait, seconds)

        present = {c.name for c in state.containers}
        missing = [c["name"] for c in pod["spec"].get("containers") or [] if c["name"] not in present]
        # Ran before: the status names a container of it, or we restarted it already (its status
        # then shows the back-off, without a container).
        known = {cs.get("name") for cs in (pod.get("status") or {}).get("containerStatuses") or []
                 if cs.get("containerID") or (namespace, name, cs.get("name")) in self._backoff}
        if any(cname not in known for cname in missing):
            # A container that never ran (the daemon died between creating the pod and it): the
            # driver's create_pod with the same uid creates exactly the missing ones; no back-off,
            # as nothing restarts. (Any missing one that did run comes back with it.)
            request, retry = self._create_and_start(pod, state=state)
            if request is None or retry is not None:
                return retry
            for cname in missing:
                if cname in known:
                    self._backoff.setdefault((namespace, name, cname), Backoff()).step(now)
                    self._restarted(pod, cname, last=None, why="removed")
            return 0.0
        for cname in missing:
            # Drift: a container removed behind our back (podman rm -f): a restart like any other.
            refused = self._restart(pod, cname, last=None, why="removed")
            if refused is None:
                started_any = True
            else:
                later(refused)
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
                refused = self._start(pod, container=c.name)
                if refused is not None:
                    later(refused)
                    continue
                started_any = True
                continue
            killed = self._probe_killed.get((namespace, name, c.name)) == c.container_id
            if policy == "Never" or (policy == "OnFailure" and c.exit_code == 0 and not killed):
                continue
            refused = self._restart(pod, c.name, last=c, why="probe" if killed else "exited")
            if refused is None:
                started_any = True
            else:
                later(refused)
        if started_any:
            return 0.0
        return wait

    def _restart(self, pod: Obj, cname: str, *, last: ContainerState | None, why: str,
                 init_container: bool = False) -> float | None:
        """Restart one container (a new one from the image) once its crash-loop back-off allows:
        None when it runs again, else the seconds until the next attempt. ``init_container``: it is
        one of the pod's init containers (counted in initContainerStatuses)."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        now = self._clock.now()
        b = self._backoff.setdefault((namespace, name, cname), Backoff())
        if b.waiting(now):
            return b.remaining(now)
        try:
            request = build_request(pod=pod, store=self._store, volumes_dir=self.volumes_dir, labels=self._labels(pod))
        except ConfigError as exc:
            self._event(pod, "Warning", "Failed", f"Error: {exc}")
            return 5.0
        refused = self._start(pod, container=cname, recreate=request)
        if refused is not None:
            return refused
        self._probe_killed.pop((namespace, name, cname), None)
        b.step(now)
        if init_container:
            init.bump_restart(self._store, pod, cname, last=last)
            self._event(pod, "Warning", "BackOff", f"Restarted init container {cname} (exit code "
                        f"{last.exit_code if last else None}); next restart no sooner than {int(b.delay)}s")
            return None
        self._restarted(pod, cname, last=last, why=why)
        return None

    def _restarted(self, pod: Obj, cname: str, *, last: ContainerState | None, why: str) -> None:
        """Count the restart and say why (events, log); ``last`` is the container it replaced."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        podstatus.bump_restart(self._store, pod, cname,
                               last_state={"terminated": podstatus.terminated_state(last)} if last else None)
        b = self._backoff.get((namespace, name, cname))
        delay = f"; next restart no sooner than {int(b.delay)}s" if b and b.delay else ""
        if why == "removed":
            self._event(pod, "Warning", "DriftCorrected", f"Container {cname} was removed outside reconciler; recreated")
            log.info("drift corrected", object=f"pod/{name}", namespace=namespace, container=cname, action="recreate")
            return
        code = last.exit_code if last else None
        if why == "probe":
            self._event(pod, "Normal", "Restarted",
                        f"Restarted container {cname} after its liveness or startup probe failed{delay}")
        else:
            self._event(pod, "Warning" if code else "Normal", "BackOff" if code else "Restarted",
                        f"Restarted container {cname} (exit code {code}){delay}")
        log.info("container restarted", object=f"pod/{name}", namespace=namespace, container=cname, reason=why,
                 exit_code=code, action="restart")

    def _create_and_start(self, pod: Obj, *, state: PodState | None) -> tuple[PodRequest | None, float | None]:
        """Create the engine pod (or the containers it lacks: the driver creates only what is
        missing for the same uid) and start it. Returns the request and None when it runs, else
        the seconds until the next attempt (request None: the pod's config cannot be made yet).

        A pod with init containers still to run (``state``: the engine's, None if it has none) is
        made with its init containers only, and the first is started (``_run_init``); once they
        all succeeded, this makes the app containers and starts each (a pod start would run the
        finished init containers again)."""
        try:
            request = build_request(pod=pod, store=self._store, volumes_dir=self.volumes_dir, labels=self._labels(pod))
        except ConfigError as exc:
            self._config_error(pod, exc)
            return None, CONFIG_RETRY
        initialising = not init.initialised(pod, state)
        # It ran before (a container of it had an ID) yet the engine had to create it: the
        # engine lost the pod, or containers of it, behind our back.
        ran_before = any(cs.get("containerID") for cs in (pod.get("status") or {}).get("containerStatuses") or [])
        if request.pod_ip and not self.teardown.releasing.wait(request.pod_ip):
            # A removal of this node still holds the address (teardown.py): go ahead, the engine decides.
            log.warning("pod IP still held by a pod being removed", object=f"pod/{request.name}",
                        namespace=request.namespace, node=self.node, pod_ip=request.pod_ip)
        try:
            # The app containers come only once every init container has succeeded (initcontainers.py).
            created = self.driver.create_pod(replace(request, containers=()) if initialising
                                             else replace(request, init_containers=()))
        except ContainerConfigError as exc:
            self._config_error(pod, exc)
            return None, CONFIG_RETRY
        if ran_before:
            self.on_drift(drift.POD_RECREATED)
        if initialising:
            return request, self._run_init(pod, created, created_now=True)
        if not request.init_containers:
            return request, self._start(pod, container=None)
        for container in request.containers:
            refused = self._start(pod, container=container.name, repair=False)
            if refused is not None:
                return request, refused
        return request, None

    def _config_error(self, pod: Obj, exc: Exception) -> None:
        """The pod's containers cannot be configured yet (Kubernetes' CreateContainerConfigError)."""
        self._event(pod, "Warning", "Failed", f"Error: {exc}")
        podstatus.set_waiting(self._store, pod, reason="CreateContainerConfigError", message=str(exc))

    def _run_init(self, pod: Obj, state: PodState, *, created_now: bool = False) -> float | None:
        """One step of the pod's initialisation (see ``initcontainers``); the seconds until the
        next look (None: nothing will change by itself)."""
        step = init.next_step(pod, state)
        if step.kind == "done":
            request, retry = self._create_and_start(pod, state=state)
            if request is not None and retry is None:
                self._event(pod, "Normal", "Started", "Init containers completed; started the app containers")
            return retry
        if step.kind == "wait":
            return init.INIT_POLL
        if step.kind == "start":
            refused = self._start(pod, container=step.container, repair=False)
            return refused if refused is not None else init.INIT_POLL
        if step.kind == "create":
            if created_now:  # the driver did not make it: do not loop here
                raise DriverError(f"init container {step.container} was not created")
            _request, retry = self._create_and_start(pod, state=state)
            return retry if retry is not None else init.INIT_POLL
        if step.kind == "restart":
            refused = self._restart(pod, step.container, last=step.last, why="exited", init_container=True)
            return refused if refused is not None else init.INIT_POLL
        return None  # failed under restartPolicy Never: the pod will not start

    def _start(self, pod: Obj, *, container: str | None, recreate: PodRequest | None = None,
               repair: bool = True) -> float | None:
        """Start the pod's containers (``container`` None) or one container; with ``recreate``
        (the pod's request), replace that container by a new one from its image and start it.
        None when done, else the seconds until the next attempt.

        A start the engine refuses (bad command, missing mount...) is RunContainerError,
        retried with the crash-loop back-off: it will most likely fail the same way again.
        An unreachable engine is the node's problem, not the pod's, so it is raised. ``repair``
        False: a first start of that container (an init container, or an app container after
        them), not a repair."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        key = (namespace, name)
        now = self._clock.now()
        b = self._run_backoff.get(key)
        if b is not None and b.waiting(now):
            return b.remaining(now)
        try:
            if container is None:
                self.driver.start_pod(namespace=namespace, name=name)
            elif recreate is not None:
                spec_c = next(c for c in (*recreate.init_containers, *recreate.containers) if c.name == container)
                # Each start pulls per imagePullPolicy, as the kubelet does (Always: a new pull).
                self.driver.pull(spec_c.image, policy=spec_c.image_pull_policy)
                self.driver.recreate_container(recreate, container=container,
                                               grace_seconds=recreate.termination_grace_period_seconds)
            else:
                self.driver.start_container(namespace=namespace, name=name, container=container)
        except NodeUnreachable:
            raise
        except PodIPConflict as exc:
            self._give_up(pod, reason="PodIPConflict", message=str(exc))
            return None
        except DriverError as exc:
            b = self._run_backoff.setdefault(key, Backoff())
            b.step(now, message=str(exc))
            self._event(pod, "Warning", "Failed", f"Error: {exc}")
            log.warning("container start refused", object=f"pod/{name}", namespace=namespace, node=self.node,
                        container=container or "*", error=str(exc), retry_in=b.delay, action="start")
            return b.delay
        if container is not None and repair:
            # One container started (again): it exited, was stopped, killed or removed, failed its
            # liveness probe, or never started (the daemon died between create and start): in each
            # case the engine had drifted from the pod.
            self.on_drift(drift.CONTAINER_RESTARTED)
        self._run_backoff.pop(key, None)
        return None

    # -- probes ------------------------------------------------------------------------------
    def _kill_unhealthy(self, pod: Obj, state: PodState) -> bool:
        """Kill containers whose liveness (or startup) probe ran out of attempts; True if any.
        Only the kill: ``_restart_exited`` restarts them after the crash-loop back-off."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        grace = int((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        killed = False
        for c in state.containers:
            if c.state != "running":
                continue
            probe_state = self.prober.state(pod_key=(namespace, name), container=c.name)
            if not probe_state.restart_needed:
                continue
            self._event(pod, "Normal", "Killing",
                        f"Container {c.name} failed its liveness or startup probe, will be restarted")
            self._probe_killed[(namespace, name, c.name)] = c.container_id
            self.driver.stop_container(namespace=namespace, name=name, container=c.name, grace_seconds=grace)
            log.info("container killed", object=f"pod/{name}", namespace=namespace, container=c.name,
                     reason=probe_state.message, action="kill")
            killed = True
        return killed

    def _probe_changed(self, key: PodKey) -> None:
        # A verdict changed by our own _sync_probes needs no second look: its caller computes the
        # pod's status with the new verdict right after (a reconcile writes it, a relist enqueues
        # the pod if it is out of step). Without this, a restarted agent's first look at every
        # pod (each one new to the prober) queued each pod again.
        if getattr(self._syncing, "key", None) != key:
            self.enqueue(key)

    def _sync_probes(self, pod: Obj, state: PodState | None) -> None:
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        self._syncing.key = (namespace, name)
        try:
            self._sync_probes_of(pod, state, namespace=namespace, name=name)
        finally:
            self._syncing.key = None

    def _sync_probes_of(self, pod: Obj, state: PodState | None, *, namespace: str, name: str) -> None:
        running = {c.name: c for c in (state.containers if state else ()) if c.state == "running"}
        pod_ip = state.pod_ip if state else ""
        # What the status said before (e.g. before this agent restarted): a container reported
        # ready keeps its readiness until its next probe, so endpoints do not flap on a restart.
        reported = {s.get("name"): s for s in (pod.get("status") or {}).get("containerStatuses") or []}
        for spec_c in (pod.get("spec") or {}).get("containers") or []:
            cname = spec_c["name"]
            c = running.get(cname)
            ports = {p["name"]: int(p["containerPort"]) for p in spec_c.get("ports") or [] if p.get("name")}
            # A closure only for a container with an exec probe: a relist at start-up syncs every
            # container, and 30,000 closures (with their cells) were a tenth of it (bench/cpscale.py).
            exec_fn = self._exec_fn(namespace, name, cname) if _has_exec_probe(spec_c) else None
            target = ProbeTarget(pod_ip=pod_ip, ports_by_name=ports, exec_fn=exec_fn)
            before = reported.get(cname) or {}
            was_ready = bool(c and before.get("ready") and before.get("containerID") == f"podman://{c.container_id}")
            self.prober.sync_container(pod_key=(namespace, name), container=cname, spec=spec_c, target=target,
                                       started_at=from_rfc3339(c.started_at) if c else None, running=c is not None,
                                       instance=c.container_id if c else "", was_ready=was_ready)

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

    # -- status ----------------------------------------------------------------------------
    def _in_step(self, pod: Obj, state: PodState) -> bool:
        """Does the pod's stored status say what the engine state implies (init containers included)?"""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        return podstatus.in_step(self._status_for(pod, state), pod) and init.in_step(
            pod, state, now=self._clock.now(), backoff=lambda cname: self._backoff.get((namespace, name, cname)))

    def _status_for(self, pod: Obj, state: PodState | None) -> podstatus.ComputedStatus:
        """The pod status the engine implies (status.py), after telling the prober what runs."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        now = self._clock.now()
        refused = self._run_backoff.get((namespace, name))
        self._sync_probes(pod, state)
        return podstatus.pod_status(
            pod, state, now=now, refused=refused,
            probes=lambda container: self.prober.state(pod_key=(namespace, name), container=container),
            crash_backoff=lambda container: self._backoff.get((namespace, name, container)))

    # -- bookkeeping -------------------------------------------------------------------------
    def _give_up(self, pod: Obj, *, reason: str, message: str) -> None:
        """This pod cannot run on this node as scheduled, however often it is retried: it is Failed
        (the kubelet's terminal phase; its ReplicaSet replaces it with a new pod, a new IP), and
        its engine pod goes. Kubernetes' kubelet does the same for a pod it rejects at admission."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        self._given_up[(namespace, name)] = pod["metadata"].get("uid", "")
        self._event(pod, "Warning", reason, message)
        log.warning("pod failed", object=f"pod/{name}", namespace=namespace, node=self.node, reason=reason,
                    error=message, action="fail")
        podstatus.set_failed(self._store, pod, reason=reason, message=message, now=self._clock.now())
        try:
            self.driver.remove_pod(namespace=namespace, name=name)
        except DriverError as exc:  # what is left is an orphan, removed by the relist's rule
            log.warning("cannot remove the failed pod", object=f"pod/{name}", namespace=namespace, error=str(exc))

    def _forget(self, key: PodKey) -> None:
        """The pod is gone: its probes and back-offs go too."""
        namespace, name = key
        self._given_up.pop(key, None)
        self.prober.forget_pod(key)
        self._pull_backoff.pop(key, None)
        self._run_backoff.pop(key, None)
        for k in [k for k in self._backoff if k[0] == namespace and k[1] == name]:
            self._backoff.pop(k, None)
        for k in [k for k in self._probe_killed if k[0] == namespace and k[1] == name]:
            self._probe_killed.pop(k, None)

    def _event(self, pod: Obj, etype: str, reason: str, message: str) -> None:
        self._store.record_event(kind="Pod", namespace=pod["metadata"]["namespace"], name=pod["metadata"]["name"],
                                 uid=pod["metadata"].get("uid", ""), type=etype, reason=reason, message=message)


_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")


def _has_exec_probe(container: Obj) -> bool:
    return any("exec" in (container.get(probe) or {}) for probe in _PROBES)
