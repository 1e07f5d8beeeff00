"""Container probes (the kubelet's prober): startup, liveness and readiness checks
run by the node agent, turned into per-container results it can act on.

Why a module of its own: probing is time-driven I/O that must not block the node
agent's reconcile loop, and its threshold rules are fiddly enough to deserve tests
against real sockets. It knows nothing of the store: the caller says which
containers run where (``sync_container``), reads results (``state``), and is told
when they change (``on_change``); it decides what a result means for the pod
(Ready condition, restarting a container, events).

Semantics follow Kubernetes' prober worker:
- each probe runs every ``periodSeconds``, first at container start +
  ``initialDelaySeconds``; a result only counts after ``failureThreshold``
  (or ``successThreshold``) consecutive equal outcomes;
- readiness starts failed, liveness starts successful, startup starts unknown;
  except for a container the prober meets already running and reported ready (``was_ready``:
  the node agent restarted, its pods did not): its readiness starts where it was, so a
  restart of the daemon never takes a healthy pod out of its Services' endpoints; the next
  probe runs at once and decides from there (the kubelet keeps a pod ready across its own
  restarts the same way);
  while a startup probe has not succeeded, liveness and readiness do not run,
  and after it succeeds it is not run again for that container;
- a liveness or startup failure puts that probe on hold and marks the container
  for restart; a new container start time resets every probe of the container;
- a probe that *errors* (it could not be run at all, e.g. an unknown port name)
  is thrown away, as the kubelet does: it neither succeeds nor fails.

Split: ``probespec.py`` parses a container's probes (with the API server's defaults),
``probechecks.py`` runs one check (exec, tcpSocket, httpGet); this module holds the
results and decides when each probe runs.

Scheduling: one scheduler thread hands due probes to a few worker threads, so a
slow probe (bounded by its timeout) does not delay the others; a probe is never
handed out again while it is still running. ``run_due`` runs the same logic in
the caller's thread for tests and simulations with a manual clock.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reconciler.core.clock import Clock
from reconciler.kubelet.probechecks import Outcome, ProbeTarget, run_handler
from reconciler.kubelet.probespec import KINDS, LIVENESS, STARTUP, TITLE, ProbeSpec, parse_probes

# The prober's face: the node agent and the tests import these names from here (the spec
# parsing lives in probespec.py, the checks in probechecks.py).
__all__ = ["ContainerProbeState", "ProbeEvent", "ProbeTarget", "Prober", "parse_probes"]

# The scheduler re-reads the clock at least this often, so a clock that is not
# wall time (a manual clock moved by a test) is still followed.
_MAX_SLEEP = 0.5


@dataclass(frozen=True, kw_only=True)
class ContainerProbeState:
    ready: bool  # readiness (True when the container has no readiness probe and is started)
    started: bool  # startup probe passed (True if none)
    restart_needed: bool  # liveness or startup exhausted failureThreshold since the last (re)start
    message: str  # last failure message, e.g. 'Readiness probe failed: HTTP probe failed with statuscode: 503'


@dataclass(frozen=True, kw_only=True)
class ProbeEvent:
    """One failed or errored probe run, worded as the kubelet's 'Unhealthy' event."""
    pod_key: tuple[str, str]
    container: str
    probe: str  # startup | liveness | readiness
    type: str  # "Warning"
    reason: str  # "Unhealthy"
    message: str  # e.g. 'Liveness probe failed: dial tcp 127.0.0.1:80: connect: connection refused'


_NOT_TRACKED = ContainerProbeState(ready=False, started=False, restart_needed=False, message="")


@dataclass
class _Probe:
    config: ProbeSpec
    next_due: float
    result: bool  # the current, threshold-filtered result
    last: bool | None = None  # the last raw outcome, for counting runs
    run: int = 0  # consecutive raw outcomes equal to ``last``
    on_hold: bool = False  # liveness/startup failed: wait for a new container
    in_flight: bool = False


@dataclass
class _Container:
    configs: dict[str, ProbeSpec]
    target: ProbeTarget
    running: bool
    started_at: float | None  # as given by the caller
    probes: dict[str, _Probe] = field(default_factory=dict)
    message: str = ""
    message_kind: str = ""  # the probe whose failure ``message`` reports
    instance: str = ""  # the engine's container id, as given by the caller


@dataclass(frozen=True, kw_only=True)
class _Job:
    key: tuple[tuple[str, str], str]
    container: _Container
    probe: _Probe
    config: ProbeSpec
    target: ProbeTarget


class Prober:
    """Runs the probes of every container the node agent has synced; thread-safe."""

    def __init__(self, *, clock: Clock, on_change: Callable[[tuple[str, str]], None], workers: int = 4,
                 on_event: Callable[[ProbeEvent], None] | None = None) -> None:
        self._clock = clock
        self._on_change = on_change
        self._on_event = on_event
        self._workers = max(1, workers)
        self._cond = threading.Condition()
        self._containers: dict[tuple[tuple[str, str], str], _Container] = {}
        # The same, by pod, and only those with probes: what forget_pod and the due scans walk
        # (walking every container of the node made each of them O(pods); issue 16).
        self._by_pod: dict[tuple[str, str], set[str]] = {}
        self._probed: dict[tuple[tuple[str, str], str], _Container] = {}
        self._running = False
        self._scheduler: threading.Thread | None = None
        self._jobs: queue.Queue[_Job | None] | None = None

    # -- what to probe --------------------------------------------------------------------
    def sync_container(self, *, pod_key: tuple[str, str], container: str, spec: dict[str, Any], target: ProbeTarget,
                       started_at: float | None, running: bool, instance: str = "", was_ready: bool = False) -> None:
        """Tell the prober about one container; idempotent. A new ``started_at`` or
        ``instance`` (the engine's container id: a restart makes a new container, which
        may well start within the same second as the old one, and start times have
        whole seconds), a changed probe spec, or running again after not running
        resets its probes. ``was_ready``: the container (this very ``instance``) was reported
        ready before this prober existed; it counts only when the prober first meets it."""
        configs = parse_probes(spec)
        key = (pod_key, container)
        with self._cond:
            before = self._state_locked(key)
            c = self._containers.get(key)
            first_seen = c is None
            if c is None:
                c = _Container(configs=configs, target=target, running=False, started_at=None)
                self._containers[key] = c
                self._by_pod.setdefault(pod_key, set()).add(container)
            c.target = target
            if not running:
                c.running, c.probes, c.message, c.message_kind = False, {}, "", ""
                c.configs, c.started_at, c.instance = configs, started_at, instance
            elif not c.running or c.started_at != started_at or c.instance != instance or c.configs != configs:
                self._reset_locked(c, configs=configs, started_at=started_at)
                c.instance = instance
                if first_seen and was_ready:
                    self._resume_ready_locked(c)
            if c.probes:
                self._probed[key] = c
            else:
                self._probed.pop(key, None)
            after = self._state_locked(key)
            self._cond.notify_all()
        if before != after:
            self._on_change(pod_key)

    def _reset_locked(self, c: _Container, *, configs: dict[str, ProbeSpec], started_at: float | None) -> None:
        # With no known start time, count the initial delay from now (what we saw first).
        start = started_at if started_at is not None else self._clock.now()
        c.configs, c.started_at, c.running = configs, started_at, True
        c.message, c.message_kind = "", ""
        # Fresh _Probe objects: a result still in flight for the old container is
        # recognised as stale when it comes back and thrown away.
        c.probes = {kind: _Probe(config=cfg, next_due=start + cfg.initial_delay, result=kind == LIVENESS)
                    for kind, cfg in configs.items()}

    def _resume_ready_locked(self, c: _Container) -> None:
        """A container already running and ready when this prober started: keep it so."""
        now = self._clock.now()
        for probe in c.probes.values():
            probe.result = True  # ready: its startup probe had passed, and its readiness too
            probe.next_due = min(probe.next_due, now)

    def forget_pod(self, pod_key: tuple[str, str]) -> None:
        with self._cond:
            for container in self._by_pod.pop(pod_key, ()):
                self._containers.pop((pod_key, container), None)
                self._probed.pop((pod_key, container), None)

    # -- results ----------------------------------------------------------------------------
    def state(self, *, pod_key: tuple[str, str], container: str) -> ContainerProbeState:
        with self._cond:
            return self._state_locked((pod_key, container))

    def _state_locked(self, key: tuple[tuple[str, str], str]) -> ContainerProbeState:
        c = self._containers.get(key)
        if c is None or not c.running:
            return _NOT_TRACKED
        startup, liveness, readiness = (c.probes.get(k) for k in KINDS)
        started = startup is None or startup.result
        return ContainerProbeState(
            ready=started and (readiness is None or readiness.result),
            started=started,
            restart_needed=bool((liveness and liveness.on_hold) or (startup and startup.on_hold)),
            message=c.message,
        )

    # -- scheduling -------------------------------------------------------------------------
    def _eligible(self, c: _Container, kind: str, p: _Probe) -> bool:
        if not c.running or p.on_hold or p.in_flight:
            return False
        startup = c.probes.get(STARTUP)
        if kind == STARTUP:
            return not p.result  # a startup probe that passed is done for this container
        return startup is None or startup.result  # gated until the startup probe passes

    def _take_due_locked(self, now: float) -> list[_Job]:
        jobs = []
        for key, c in self._probed.items():
            for kind, p in c.probes.items():
                if p.next_due <= now and self._eligible(c, kind, p):
                    p.in_flight = True
                    p.next_due = now + p.config.period
                    jobs.append(_Job(key=key, container=c, probe=p, config=p.config, target=c.target))
        return jobs

    def _next_due_locked(self) -> float | None:
        dues = [p.next_due for c in self._probed.values() for kind, p in c.probes.items()
                if self._eligible(c, kind, p)]
        return min(dues) if dues else None

    def run_due(self) -> int:
        """Run, in this thread, every probe due at ``clock.now()``; a probe made
        eligible by another (readiness after startup passed) runs in the same call."""
        ran = 0
        while True:
            with self._cond:
                jobs = self._take_due_locked(self._clock.now())
            if not jobs:
                return ran
            for job in jobs:
                self._execute(job)
                ran += 1

    def start(self) -> None:
        with self._cond:
            if self._running:
                return
            self._running = True
            jobs: queue.Queue[_Job | None] = queue.Queue()
            self._jobs = jobs
            self._scheduler = threading.Thread(target=self._schedule, args=(jobs,), name="prober", daemon=True)
            self._scheduler.start()
            # Daemon threads: a probe stuck in a misbehaving exec_fn must not hold up exit.
            for i in range(self._workers):
                threading.Thread(target=self._work, args=(jobs,), name=f"prober-{i}", daemon=True).start()

    def stop(self) -> None:
        with self._cond:
            if not self._running:
                return
            self._running = False
            jobs, scheduler = self._jobs, self._scheduler
            self._jobs = self._scheduler = None
            self._cond.notify_all()
        if scheduler is not None:
            scheduler.join(timeout=5)
        if jobs is not None:
            # Jobs handed out but not started would stay "in flight" for ever.
            while True:
                try:
                    job = jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    with self._cond:
                        job.probe.in_flight = False
            for _ in range(self._workers):
                jobs.put(None)

    def _schedule(self, jobs: queue.Queue[_Job | None]) -> None:
        while True:
            with self._cond:
                if not self._running or self._jobs is not jobs:
                    return
                now = self._clock.now()
                due = self._take_due_locked(now)
                if not due:
                    nxt = self._next_due_locked()
                    wait = _MAX_SLEEP if nxt is None else min(max(nxt - now, 0.001), _MAX_SLEEP)
                    self._cond.wait(wait)
                    continue
            for job in due:
                jobs.put(job)

    def _work(self, jobs: queue.Queue[_Job | None]) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            self._execute(job)

    # -- running one probe ------------------------------------------------------------------------
    def _execute(self, job: _Job) -> None:
        try:
            outcome = run_handler(config=job.config, target=job.target)
        except Exception as exc:  # a bug in a handler must not kill a worker or wedge the probe
            outcome = Outcome(result="error", output=f"{type(exc).__name__}: {exc}")
        self._apply(job, outcome)

    def _apply(self, job: _Job, outcome: Outcome) -> None:
        pod_key, container = job.key
        kind = job.config.kind
        event: ProbeEvent | None = None
        with self._cond:
            job.probe.in_flight = False
            c = self._containers.get(job.key)
            if c is not job.container or c.probes.get(kind) is not job.probe:
                self._cond.notify_all()
                return  # the container restarted, stopped or was forgotten meanwhile
            before = self._state_locked(job.key)
            p = job.probe
            if outcome.result == "error":
                # The kubelet throws away a probe it could not run; only say why.
                c.message, c.message_kind = f"{TITLE[kind]} probe errored: {outcome.output}", kind
            else:
                ok = outcome.result == "success"
                if p.last is ok:
                    p.run += 1
                else:
                    p.last, p.run = ok, 1
                threshold = p.config.success_threshold if ok else p.config.failure_threshold
                if p.run >= threshold:
                    p.result = ok
                    if not ok and kind in (LIVENESS, STARTUP):
                        p.on_hold, p.run = True, 0
                if ok:
                    if c.message_kind == kind:
                        c.message, c.message_kind = "", ""
                else:
                    c.message, c.message_kind = f"{TITLE[kind]} probe failed: {outcome.output}", kind
            if outcome.result != "success":
                event = ProbeEvent(pod_key=pod_key, container=container, probe=kind, type="Warning",
                                   reason="Unhealthy", message=c.message)
            after = self._state_locked(job.key)
            self._cond.notify_all()  # a startup success may have made other probes due
        if event is not None and self._on_event is not None:
            self._on_event(event)
        if before != after:
            self._on_change(pod_key)
