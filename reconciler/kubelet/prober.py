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
  while a startup probe has not succeeded, liveness and readiness do not run,
  and after it succeeds it is not run again for that container;
- a liveness or startup failure puts that probe on hold and marks the container
  for restart; a new container start time resets every probe of the container;
- a probe that *errors* (it could not be run at all, e.g. an unknown port name)
  is thrown away, as the kubelet does: it neither succeeds nor fails.

Scheduling: one scheduler thread hands due probes to a few worker threads, so a
slow probe (bounded by its timeout) does not delay the others; a probe is never
handed out again while it is still running. ``run_due`` runs the same logic in
the caller's thread for tests and simulations with a manual clock.
"""
from __future__ import annotations

import http.client
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from reconciler.core.clock import Clock

STARTUP = "startup"
LIVENESS = "liveness"
READINESS = "readiness"
_KINDS = (STARTUP, LIVENESS, READINESS)
_TITLE = {STARTUP: "Startup", LIVENESS: "Liveness", READINESS: "Readiness"}

_USER_AGENT = "kube-probe/1.30"
_MAX_REDIRECTS = 10  # Go's http.Client default, which the kubelet keeps
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
# The scheduler re-reads the clock at least this often, so a clock that is not
# wall time (a manual clock moved by a test) is still followed.
_MAX_SLEEP = 0.5


@dataclass(frozen=True, kw_only=True)
class ProbeTarget:
    pod_ip: str  # httpGet/tcpSocket go to pod_ip:port unless the handler sets host
    ports_by_name: dict[str, int]  # container port names -> numbers, to resolve named ports
    # (command, timeout) -> (exit code, output); raises TimeoutError when the command
    # overran the timeout. None if the node cannot exec.
    exec_fn: Callable[[list[str], float], tuple[int, str]] | None


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


@dataclass(frozen=True, kw_only=True)
class _Config:
    """One probe of a container spec, with Kubernetes' defaults applied."""
    kind: str
    handler: dict[str, Any]  # {"httpGet": {...}} | {"tcpSocket": {...}} | {"exec": {...}} | {} (none)
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int


@dataclass(frozen=True, kw_only=True)
class _Outcome:
    result: str  # "success" | "failure" | "error"
    output: str


@dataclass
class _Probe:
    config: _Config
    next_due: float
    result: bool  # the current, threshold-filtered result
    last: bool | None = None  # the last raw outcome, for counting runs
    run: int = 0  # consecutive raw outcomes equal to ``last``
    on_hold: bool = False  # liveness/startup failed: wait for a new container
    in_flight: bool = False


@dataclass
class _Container:
    configs: dict[str, _Config]
    target: ProbeTarget
    running: bool
    started_at: float | None  # as given by the caller
    probes: dict[str, _Probe] = field(default_factory=dict)
    message: str = ""
    message_kind: str = ""  # the probe whose failure ``message`` reports


@dataclass(frozen=True, kw_only=True)
class _Job:
    key: tuple[tuple[str, str], str]
    container: _Container
    probe: _Probe
    config: _Config
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
        self._running = False
        self._scheduler: threading.Thread | None = None
        self._jobs: queue.Queue[_Job | None] | None = None

    # -- what to probe --------------------------------------------------------------------
    def sync_container(self, *, pod_key: tuple[str, str], container: str, spec: dict, target: ProbeTarget,
                       started_at: float | None, running: bool) -> None:
        """Tell the prober about one container; idempotent. A new ``started_at`` (or a
        changed probe spec, or running again after not running) resets its probes."""
        configs = parse_probes(spec)
        key = (pod_key, container)
        with self._cond:
            before = self._state_locked(key)
            c = self._containers.get(key)
            if c is None:
                c = _Container(configs=configs, target=target, running=False, started_at=None)
                self._containers[key] = c
            c.target = target
            if not running:
                c.running, c.probes, c.message, c.message_kind = False, {}, "", ""
                c.configs, c.started_at = configs, started_at
            elif not c.running or c.started_at != started_at or c.configs != configs:
                self._reset_locked(c, configs=configs, started_at=started_at)
            after = self._state_locked(key)
            self._cond.notify_all()
        if before != after:
            self._on_change(pod_key)

    def _reset_locked(self, c: _Container, *, configs: dict[str, _Config], started_at: float | None) -> None:
        # With no known start time, count the initial delay from now (what we saw first).
        start = started_at if started_at is not None else self._clock.now()
        c.configs, c.started_at, c.running = configs, started_at, True
        c.message, c.message_kind = "", ""
        # Fresh _Probe objects: a result still in flight for the old container is
        # recognised as stale when it comes back and thrown away.
        c.probes = {kind: _Probe(config=cfg, next_due=start + cfg.initial_delay, result=kind == LIVENESS)
                    for kind, cfg in configs.items()}

    def forget_pod(self, pod_key: tuple[str, str]) -> None:
        with self._cond:
            for key in [k for k in self._containers if k[0] == pod_key]:
                del self._containers[key]

    # -- results ----------------------------------------------------------------------------
    def state(self, *, pod_key: tuple[str, str], container: str) -> ContainerProbeState:
        with self._cond:
            return self._state_locked((pod_key, container))

    def _state_locked(self, key: tuple[tuple[str, str], str]) -> ContainerProbeState:
        c = self._containers.get(key)
        if c is None or not c.running:
            return _NOT_TRACKED
        startup, liveness, readiness = (c.probes.get(k) for k in _KINDS)
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
        for key, c in self._containers.items():
            for kind, p in c.probes.items():
                if p.next_due <= now and self._eligible(c, kind, p):
                    p.in_flight = True
                    p.next_due = now + p.config.period
                    jobs.append(_Job(key=key, container=c, probe=p, config=p.config, target=c.target))
        return jobs

    def _next_due_locked(self) -> float | None:
        dues = [p.next_due for c in self._containers.values() for kind, p in c.probes.items()
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
            outcome = _Outcome(result="error", output=f"{type(exc).__name__}: {exc}")
        self._apply(job, outcome)

    def _apply(self, job: _Job, outcome: _Outcome) -> None:
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
                c.message, c.message_kind = f"{_TITLE[kind]} probe errored: {outcome.output}", kind
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
                    c.message, c.message_kind = f"{_TITLE[kind]} probe failed: {outcome.output}", kind
            if outcome.result != "success":
                event = ProbeEvent(pod_key=pod_key, container=container, probe=kind, type="Warning",
                                   reason="Unhealthy", message=c.message)
            after = self._state_locked(job.key)
            self._cond.notify_all()  # a startup success may have made other probes due
        if event is not None and self._on_event is not None:
            self._on_event(event)
        if before != after:
            self._on_change(pod_key)


# -- spec parsing ----------------------------------------------------------------------------------
def parse_probes(spec: dict) -> dict[str, _Config]:
    """The probes of a Kubernetes container dict, with the API server's defaults."""
    configs = {}
    for kind in _KINDS:
        raw = spec.get(f"{kind}Probe")
        if not isinstance(raw, dict):
            continue
        handler = {k: raw[k] for k in ("exec", "httpGet", "tcpSocket", "grpc") if raw.get(k) is not None}
        success = _number(raw.get("successThreshold"), default=1, minimum=1)
        configs[kind] = _Config(
            kind=kind,
            handler=handler,
            initial_delay=float(_number(raw.get("initialDelaySeconds"), default=0, minimum=0)),
            period=float(_number(raw.get("periodSeconds"), default=10, minimum=0.001)),
            timeout=float(_number(raw.get("timeoutSeconds"), default=1, minimum=0.001)),
            # Kubernetes rejects anything but 1 for liveness and startup; hold to that here too.
            success_threshold=int(success) if kind == READINESS else 1,
            failure_threshold=int(_number(raw.get("failureThreshold"), default=3, minimum=1)),
        )
    return configs


def _number(value: Any, *, default: float, minimum: float) -> float:
    """A probe field as a number; 0, absent or nonsense take the default, as the
    API server's defaulting does (validation reports nonsense elsewhere)."""
    if isinstance(value, bool):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    if number == 0 and minimum > 0:
        return default
    return number if number >= minimum else default


# -- handlers ------------------------------------------------------------------------------------------
def run_handler(*, config: _Config, target: ProbeTarget) -> _Outcome:
    """Run one probe once, bounded by its timeout."""
    handler = config.handler
    if "exec" in handler:
        return _exec(handler["exec"], target=target, timeout=config.timeout)
    if "httpGet" in handler:
        return _http_get(handler["httpGet"], target=target, timeout=config.timeout)
    if "tcpSocket" in handler:
        return _tcp_socket(handler["tcpSocket"], target=target, timeout=config.timeout)
    if "grpc" in handler:
        return _Outcome(result="error", output="grpc probes are not supported by this node agent")
    return _Outcome(result="error", output="the probe has no handler (exec, httpGet or tcpSocket)")


class _ProbeSetupError(Exception):
    """The probe cannot be run as written (e.g. an unknown port name)."""


def _resolve_port(port: Any, target: ProbeTarget) -> int:
    if isinstance(port, bool) or port is None:
        raise _ProbeSetupError("the probe has no port")
    if isinstance(port, str):
        if port in target.ports_by_name:
            number = target.ports_by_name[port]
        else:
            try:  # the kubelet's last resort: a number written as a string
                number = int(port)
            except ValueError:
                raise _ProbeSetupError(f'port "{port}" is not the name of a port of the container') from None
    elif isinstance(port, (int, float)) and int(port) == port:
        number = int(port)
    else:
        raise _ProbeSetupError(f"invalid port: {port!r}")
    if not 0 < number < 65536:
        raise _ProbeSetupError(f"invalid port number: {number}")
    return number


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _exec(handler: dict[str, Any], *, target: ProbeTarget, timeout: float) -> _Outcome:
    command = [str(part) for part in handler.get("command") or []]
    if not command:
        return _Outcome(result="error", output="the exec probe has no command")
    if target.exec_fn is None:
        return _Outcome(result="error", output="this node cannot run exec probes")
    shown = " ".join(command)
    try:
        code, output = target.exec_fn(command, timeout)
    except TimeoutError:
        return _Outcome(result="failure", output=f'command "{shown}" timed out')
    except Exception as exc:  # the engine could not exec: an error, not a failure
        return _Outcome(result="error", output=str(exc) or type(exc).__name__)
    if code == 0:
        return _Outcome(result="success", output=output)
    # The kubelet reports the command's output; say something when there is none.
    return _Outcome(result="failure", output=output.strip() or f'command "{shown}" exited with code {code}')


def _tcp_socket(handler: dict[str, Any], *, target: ProbeTarget, timeout: float) -> _Outcome:
    try:
        port = _resolve_port(handler.get("port"), target)
    except _ProbeSetupError as exc:
        return _Outcome(result="error", output=str(exc))
    host = str(handler.get("host") or target.pod_ip)
    address = _host_port(host, port)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        return _Outcome(result="failure", output=f"dial tcp {address}: {_dial_error(exc)}")
    return _Outcome(result="success", output="")


def _dial_error(exc: OSError) -> str:
    """Go's wording for the common connect errors, so messages read like the kubelet's."""
    if isinstance(exc, ConnectionRefusedError):
        return "connect: connection refused"
    if isinstance(exc, TimeoutError):
        return "i/o timeout"
    if isinstance(exc, socket.gaierror):
        return f"lookup failed: {exc.strerror or exc}"
    return f"connect: {exc.strerror or exc}"


def _http_get(handler: dict[str, Any], *, target: ProbeTarget, timeout: float) -> _Outcome:
    try:
        port = _resolve_port(handler.get("port"), target)
    except _ProbeSetupError as exc:
        return _Outcome(result="error", output=str(exc))
    scheme = str(handler.get("scheme") or "HTTP").upper()
    if scheme not in ("HTTP", "HTTPS"):
        return _Outcome(result="error", output=f'unsupported scheme "{scheme}" (HTTP or HTTPS)')
    host = str(handler.get("host") or target.pod_ip)
    path = str(handler.get("path") or "/")
    if not path.startswith("/"):
        path = "/" + path
    headers = {"User-Agent": _USER_AGENT, "Accept": "*/*", "Connection": "close"}
    for header in handler.get("httpHeaders") or []:
        if isinstance(header, dict) and header.get("name"):
            name = str(header["name"])
            for existing in [k for k in headers if k.lower() == name.lower()]:
                del headers[existing]  # the user's header replaces ours (User-Agent, Accept, Host)
            headers[name] = str(header.get("value", ""))
    url = f"{scheme.lower()}://{_host_port(host, port)}{path}"
    first_host = (urlsplit(url).hostname or "").lower()
    deadline = time.monotonic() + timeout
    for hop in range(_MAX_REDIRECTS + 1):
        answer = _http_once(url, headers=headers, deadline=deadline)
        if isinstance(answer, _Outcome):
            return answer
        status, location = answer
        if status in _REDIRECT_CODES and location:
            nxt = urljoin(url, location)
            if (urlsplit(nxt).hostname or "").lower() != first_host or urlsplit(nxt).scheme not in ("http", "https"):
                # The kubelet does not follow redirects off the pod's host; the 3xx counts as success.
                return _Outcome(result="success", output="Probe terminated redirects")
            if hop == _MAX_REDIRECTS:
                return _Outcome(result="failure", output=f'Get "{nxt}": stopped after {_MAX_REDIRECTS} redirects')
            url = nxt
            continue
        if 200 <= status < 400:
            return _Outcome(result="success", output="")
        return _Outcome(result="failure", output=f"HTTP probe failed with statuscode: {status}")
    raise AssertionError("unreachable: the loop returns on every path")


def _http_once(url: str, *, headers: dict[str, str], deadline: float) -> tuple[int, str | None] | _Outcome:
    """One GET; (status, Location) or the failure outcome."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    remaining = deadline - time.monotonic()
    timed_out = _Outcome(result="failure",
                         output=f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)')
    if remaining <= 0:
        return timed_out
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        # Like the kubelet: probes do not verify the pod's certificate.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, port, timeout=remaining, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=remaining)
    try:
        try:
            conn.connect()
        except OSError as exc:
            if isinstance(exc, ssl.SSLError):
                return _Outcome(result="failure", output=f'Get "{url}": {exc}')
            return _Outcome(result="failure", output=f'Get "{url}": dial tcp {_host_port(host, port)}: {_dial_error(exc)}')
        if conn.sock is not None:
            conn.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            conn.request("GET", target, headers=headers)
            response = conn.getresponse()
        except TimeoutError:
            return timed_out
        except http.client.RemoteDisconnected:
            return _Outcome(result="failure", output=f'Get "{url}": EOF')
        except (OSError, http.client.HTTPException) as exc:
            return _Outcome(result="failure", output=f'Get "{url}": {str(exc) or type(exc).__name__}')
        return response.status, response.getheader("Location")
    finally:
        conn.close()
