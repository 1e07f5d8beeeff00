"""The prober against real loopback HTTP/TCP servers whose answers the tests flip,
and a fake exec: thresholds, periods, initial delays, startup gating, liveness
restarts and resets are driven exactly with a manual clock and ``run_due``; one
test runs the background scheduler on the real clock."""
from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reconciler.core.clock import ManualClock, SystemClock
from reconciler.kubelet.prober import ContainerProbeState, ProbeEvent, Prober, ProbeTarget, parse_probes
from tests.harness.waiting import wait_for

POD = ("default", "web-1")


# -- servers --------------------------------------------------------------------------------------
class FlipServer:
    """An HTTP server on 127.0.0.1 whose status per path the test sets."""

    def __init__(self) -> None:
        self.status = 200
        self.routes: dict[str, tuple[int, dict[str, str]]] = {}  # path -> (status, headers)
        self.requests: list[tuple[str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                outer.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                status, headers = outer.routes.get(self.path, (outer.status, {}))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class SilentServer:
    """Accepts connections and never answers (a hung application)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def http_server():
    server = FlipServer()
    yield server
    server.close()


@pytest.fixture
def silent_server():
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock
    sock.close()


class FakeExec:
    """exec_fn stand-in: answers with ``code``; records calls."""

    def __init__(self, code: int = 0, output: str = "") -> None:
        self.code, self.output = code, output
        self.calls: list[tuple[list[str], float]] = []

    def __call__(self, command: list[str], timeout: float) -> tuple[int, str]:
        self.calls.append((command, timeout))
        return self.code, self.output


# -- helpers -------------------------------------------------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.changes: list[tuple[str, str]] = []
        self.events: list[ProbeEvent] = []


def make_prober(clock=None) -> tuple[Prober, ManualClock, Recorder]:
    clock = clock or ManualClock()
    rec = Recorder()
    prober = Prober(clock=clock, on_change=rec.changes.append, on_event=rec.events.append)
    return prober, clock, rec


def target(*, ip: str = "127.0.0.1", ports: dict[str, int] | None = None,
           exec_fn: Callable[[list[str], float], tuple[int, str]] | None = None) -> ProbeTarget:
    return ProbeTarget(pod_ip=ip, ports_by_name=ports or {}, exec_fn=exec_fn)


def sync(prober: Prober, spec: dict, *, started_at: float | None, tgt: ProbeTarget | None = None,
         running: bool = True, container: str = "app") -> None:
    prober.sync_container(pod_key=POD, container=container, spec=spec, target=tgt or target(),
                          started_at=started_at, running=running)


def st(prober: Prober, container: str = "app") -> ContainerProbeState:
    return prober.state(pod_key=POD, container=container)


def http_probe(port: int | str, path: str = "/healthz", **fields) -> dict:
    return {"httpGet": {"path": path, "port": port}, **fields}


def steps_until(prober: Prober, clock: ManualClock, *, period: float, done: Callable[[], bool], limit: int = 50) -> int:
    """Advance by ``period`` and run due probes until ``done``; the number of periods taken."""
    for n in range(1, limit + 1):
        clock.advance(period)
        prober.run_due()
        if done():
            return n
    raise AssertionError(f"condition not reached within {limit} periods")


# -- spec defaults -----------------------------------------------------------------------------------------
def test_defaults_follow_the_api_server():
    configs = parse_probes({"livenessProbe": {"tcpSocket": {"port": 80}, "successThreshold": 3},
                            "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 0}})
    live, ready = configs["liveness"], configs["readiness"]
    assert (live.initial_delay, live.period, live.timeout, live.failure_threshold) == (0, 10, 1, 3)
    assert live.success_threshold == 1  # must be 1 for liveness, whatever was written
    assert ready.period == 10 and "startup" not in configs
    assert parse_probes({"name": "x", "image": "y"}) == {}


# -- readiness ---------------------------------------------------------------------------------------------
def test_readiness_starts_false_and_follows_thresholds(http_server):
    prober, clock, rec = make_prober()
    spec = {"readinessProbe": http_probe(http_server.port, periodSeconds=5, failureThreshold=3, successThreshold=2)}
    sync(prober, spec, started_at=clock.now())
    assert st(prober) == ContainerProbeState(ready=False, started=True, restart_needed=False, message="")
    assert rec.changes == [POD]  # now tracked (started, not ready)
    assert prober.run_due() == 1
    assert not st(prober).ready  # successThreshold 2: one success is not enough
    assert prober.run_due() == 0  # not due again until a period has passed
    clock.advance(4.9)
    assert prober.run_due() == 0
    clock.advance(0.1)
    assert prober.run_due() == 1 and st(prober).ready
    assert rec.changes == [POD, POD]

    http_server.status = 503
    n = steps_until(prober, clock, period=5, done=lambda: not st(prober).ready)
    assert n == 3  # leaves within periodSeconds x failureThreshold
    assert st(prober).message == "Readiness probe failed: HTTP probe failed with statuscode: 503"
    assert [e.message for e in rec.events][-1] == st(prober).message and rec.events[-1].reason == "Unhealthy"

    http_server.status = 204
    assert steps_until(prober, clock, period=5, done=lambda: st(prober).ready) == 2
    assert st(prober).message == ""  # the readiness failure it reported is over
    # tracked, ready, first failure's message, not ready, message cleared by a success, ready:
    # changes only, not one call per probe run
    assert len(rec.changes) == 6
    assert all(path == "/healthz" for path, _ in http_server.requests)


def test_one_failure_below_threshold_keeps_ready(http_server):
    prober, clock, _ = make_prober()
    sync(prober, {"readinessProbe": http_probe(http_server.port, periodSeconds=1)}, started_at=clock.now())
    prober.run_due()
    assert st(prober).ready
    http_server.status = 500
    steps_until(prober, clock, period=1, done=lambda: True)
    assert st(prober).ready and "statuscode: 500" in st(prober).message
    http_server.status = 200
    steps_until(prober, clock, period=1, done=lambda: True)
    http_server.status = 500
    steps_until(prober, clock, period=1, done=lambda: True)
    steps_until(prober, clock, period=1, done=lambda: True)
    assert st(prober).ready  # failures must be consecutive: the success in between reset the count


def test_no_readiness_probe_is_ready_when_running():
    prober, clock, _ = make_prober()
    sync(prober, {"name": "app"}, started_at=clock.now())
    assert st(prober) == ContainerProbeState(ready=True, started=True, restart_needed=False, message="")
    sync(prober, {"name": "app"}, started_at=clock.now(), running=False)
    assert st(prober) == ContainerProbeState(ready=False, started=False, restart_needed=False, message="")
    assert prober.state(pod_key=POD, container="never-synced").ready is False


def test_initial_delay_counts_from_container_start(http_server):
    prober, clock, _ = make_prober()
    spec = {"readinessProbe": http_probe(http_server.port, initialDelaySeconds=5, periodSeconds=2)}
    sync(prober, spec, started_at=clock.now() - 2)  # started 2 s before we saw it
    assert prober.run_due() == 0
    clock.advance(2.9)
    assert prober.run_due() == 0 and not st(prober).ready
    clock.advance(0.1)
    assert prober.run_due() == 1 and st(prober).ready


def test_a_container_seen_long_after_its_start_is_probed_at_once(http_server):
    prober, clock, _ = make_prober()
    spec = {"readinessProbe": http_probe(http_server.port, initialDelaySeconds=30)}
    sync(prober, spec, started_at=clock.now() - 3600)  # e.g. the daemon restarted
    assert prober.run_due() == 1 and st(prober).ready


def test_a_container_reported_ready_before_the_agent_restarted_stays_ready(http_server):
    # The node agent restarted (kill -9 of the daemon); its pods did not. A container the status
    # reported ready keeps its readiness, so its Services' endpoints do not flap; its probes run
    # at once and only failureThreshold failures take it out, as for any ready container.
    prober, clock, rec = make_prober()
    spec = {"readinessProbe": http_probe(http_server.port, periodSeconds=1, failureThreshold=2, initialDelaySeconds=30),
            "startupProbe": http_probe(http_server.port)}
    prober.sync_container(pod_key=POD, container="app", spec=spec, target=target(), started_at=clock.now() - 5,
                          running=True, instance="c1", was_ready=True)
    assert st(prober) == ContainerProbeState(ready=True, started=True, restart_needed=False, message="")
    http_server.status = 503
    assert prober.run_due() == 1 and st(prober).ready  # one failure of two
    steps_until(prober, clock, period=1, done=lambda: not st(prober).ready)
    # Only the first meeting counts: a new container (a restart) starts not ready, as always.
    http_server.status = 200
    prober.sync_container(pod_key=POD, container="app", spec=spec, target=target(), started_at=clock.now(),
                          running=True, instance="c2", was_ready=True)
    assert not st(prober).ready and not st(prober).started


# -- liveness ------------------------------------------------------------------------------------------------
def test_liveness_failures_ask_for_a_restart_and_a_new_start_resets(listener):
    prober, clock, rec = make_prober()
    port = listener.getsockname()[1]
    spec = {"livenessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 10, "failureThreshold": 3,
                              "initialDelaySeconds": 15}}
    t0 = clock.now()
    sync(prober, spec, started_at=t0)
    assert st(prober).ready and not st(prober).restart_needed  # liveness starts successful
    clock.advance(15)
    assert prober.run_due() == 1 and not st(prober).restart_needed

    listener.close()
    n = steps_until(prober, clock, period=10, done=lambda: st(prober).restart_needed)
    assert n == 3
    assert st(prober).message == f"Liveness probe failed: dial tcp 127.0.0.1:{port}: connect: connection refused"
    assert st(prober).ready  # liveness does not decide readiness
    clock.advance(100)
    assert prober.run_due() == 0  # on hold until the container restarts
    sync(prober, spec, started_at=t0)  # the same container: still waiting for the restart
    assert st(prober).restart_needed

    t1 = clock.now()
    sync(prober, spec, started_at=t1)  # restarted
    assert st(prober) == ContainerProbeState(ready=True, started=True, restart_needed=False, message="")
    clock.advance(14.9)
    assert prober.run_due() == 0  # the initial delay counts again from the new start
    clock.advance(0.1)
    assert prober.run_due() == 1 and st(prober).message.startswith("Liveness probe failed: ")
    # tracked, first failure message, restart_needed, reset, first failure of the new container
    assert len(rec.changes) == 5


def test_stopped_container_is_not_probed_and_restarts_fresh(listener):
    prober, clock, _ = make_prober()
    port = listener.getsockname()[1]
    spec = {"livenessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1, "failureThreshold": 1}}
    sync(prober, spec, started_at=clock.now())
    assert prober.run_due() == 1
    sync(prober, spec, started_at=clock.now(), running=False)
    clock.advance(5)
    assert prober.run_due() == 0
    sync(prober, spec, started_at=clock.now(), running=True)
    assert prober.run_due() == 1 and not st(prober).restart_needed


# -- startup -------------------------------------------------------------------------------------------------
def test_startup_gates_liveness_and_readiness(http_server):
    prober, clock, _ = make_prober()
    startup_exec = FakeExec(code=1, output="not yet")
    spec = {
        "startupProbe": {"exec": {"command": ["cat", "/tmp/started"]}, "periodSeconds": 1, "failureThreshold": 30},
        "livenessProbe": http_probe(http_server.port, path="/live", periodSeconds=1),
        "readinessProbe": http_probe(http_server.port, path="/ready", periodSeconds=1),
    }
    sync(prober, spec, started_at=clock.now(), tgt=target(exec_fn=startup_exec))
    assert st(prober) == ContainerProbeState(ready=False, started=False, restart_needed=False, message="")
    for _ in range(5):
        assert prober.run_due() == 1  # the startup probe alone
        clock.advance(1)
    assert http_server.requests == []
    assert st(prober).message == "Startup probe failed: not yet" and not st(prober).started

    startup_exec.code = 0
    assert prober.run_due() == 3  # startup passes; liveness and readiness run at once
    assert st(prober) == ContainerProbeState(ready=True, started=True, restart_needed=False, message="")
    assert sorted(p for p, _ in http_server.requests) == ["/live", "/ready"]
    calls = len(startup_exec.calls)
    clock.advance(1)
    assert prober.run_due() == 2  # the startup probe is done for this container
    assert len(startup_exec.calls) == calls == 6


def test_startup_exhausted_asks_for_restart(http_server):
    prober, clock, _ = make_prober()
    startup_exec = FakeExec(code=1)
    spec = {"startupProbe": {"exec": {"command": ["check"]}, "periodSeconds": 2, "failureThreshold": 4},
            "readinessProbe": http_probe(http_server.port)}
    t0 = clock.now()
    sync(prober, spec, started_at=t0, tgt=target(exec_fn=startup_exec))
    prober.run_due()
    n = steps_until(prober, clock, period=2, done=lambda: st(prober).restart_needed)
    assert n == 3  # four failures: the first at start, then three periods
    state = st(prober)
    assert not state.started and not state.ready
    assert state.message == 'Startup probe failed: command "check" exited with code 1'
    clock.advance(60)
    assert prober.run_due() == 0 and http_server.requests == []

    startup_exec.code = 0
    sync(prober, spec, started_at=clock.now(), tgt=target(exec_fn=startup_exec))
    assert not st(prober).restart_needed
    prober.run_due()
    assert st(prober).started and st(prober).ready


# -- handlers ----------------------------------------------------------------------------------------------------
def test_named_ports_resolve_and_unknown_names_error_without_failing(http_server):
    prober, clock, _ = make_prober()
    tgt = target(ports={"http": http_server.port})
    sync(prober, {"readinessProbe": http_probe("http")}, started_at=clock.now(), tgt=tgt)
    prober.run_due()
    assert st(prober).ready

    sync(prober, {"readinessProbe": http_probe("nope", periodSeconds=1),
                  "livenessProbe": {"tcpSocket": {"port": "nope"}, "periodSeconds": 1, "failureThreshold": 1}},
         started_at=clock.now(), tgt=tgt, container="other")
    for _ in range(5):
        prober.run_due()
        clock.advance(1)
    state = st(prober, "other")
    assert not state.ready and not state.restart_needed  # errored probes are thrown away
    assert "probe errored" in state.message and '"nope"' in state.message


def test_http_timeout_with_a_server_that_never_answers(silent_server):
    prober, clock, _ = make_prober()
    spec = {"livenessProbe": http_probe(silent_server.port, timeoutSeconds=0.3, failureThreshold=1)}
    sync(prober, spec, started_at=clock.now())
    began = time.monotonic()
    prober.run_due()
    elapsed = time.monotonic() - began
    assert 0.25 <= elapsed < 3
    assert st(prober).restart_needed
    assert st(prober).message == (f'Liveness probe failed: Get "http://127.0.0.1:{silent_server.port}/healthz": '
                                  "context deadline exceeded (Client.Timeout exceeded while awaiting headers)")


def test_exec_gets_the_timeout_and_a_timeout_is_a_failure():
    prober, clock, _ = make_prober()
    seen: list[float] = []

    def slow(command: list[str], timeout: float) -> tuple[int, str]:
        seen.append(timeout)
        raise TimeoutError

    spec = {"readinessProbe": {"exec": {"command": ["sh", "-c", "sleep 9"]}, "timeoutSeconds": 4}}
    sync(prober, spec, started_at=clock.now(), tgt=target(exec_fn=slow))
    prober.run_due()
    assert seen == [4.0]
    assert st(prober).message == 'Readiness probe failed: command "sh -c sleep 9" timed out'


def test_exec_output_is_the_failure_message_and_no_exec_is_an_error():
    prober, clock, _ = make_prober()
    spec = {"readinessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}}}
    sync(prober, spec, started_at=clock.now(),
         tgt=target(exec_fn=FakeExec(code=1, output="cat: /tmp/healthy: No such file or directory\n")))
    prober.run_due()
    assert st(prober).message == "Readiness probe failed: cat: /tmp/healthy: No such file or directory"
    sync(prober, spec, started_at=clock.now(), tgt=target(exec_fn=None), container="noexec")
    prober.run_due()
    assert st(prober, "noexec").message == "Readiness probe errored: this node cannot run exec probes"


def test_http_host_headers_and_connection_refused(http_server):
    prober, clock, _ = make_prober()
    probe = {"httpGet": {"host": "127.0.0.1", "path": "healthz?full=1", "port": http_server.port,
                         "httpHeaders": [{"name": "X-Probe", "value": "yes"}, {"name": "user-agent", "value": "mine"}]}}
    # The pod IP has nothing listening: only the explicit host can answer.
    sync(prober, {"readinessProbe": probe}, started_at=clock.now(), tgt=target(ip="127.0.0.2"))
    prober.run_due()
    assert st(prober).ready
    path, headers = http_server.requests[-1]
    assert path == "/healthz?full=1" and headers["x-probe"] == "yes" and headers["user-agent"] == "mine"
    assert headers["host"] == f"127.0.0.1:{http_server.port}"

    sync(prober, {"readinessProbe": http_probe(http_server.port)}, started_at=clock.now(),
         tgt=target(ip="127.0.0.2"), container="by-ip")
    prober.run_due()
    assert st(prober, "by-ip").message == (f'Readiness probe failed: Get "http://127.0.0.2:{http_server.port}/healthz": '
                                           f"dial tcp 127.0.0.2:{http_server.port}: connect: connection refused")
    sync(prober, {"readinessProbe": {"httpGet": {"port": http_server.port, "httpHeaders": [{"name": "Host", "value": "web.example"}]}}},
         started_at=clock.now(), container="plain")
    prober.run_due()
    path, headers = http_server.requests[-1]
    assert path == "/" and headers["user-agent"].startswith("kube-probe/") and headers["host"] == "web.example"


def test_redirects_like_the_kubelet(http_server):
    prober, clock, _ = make_prober()
    http_server.routes = {
        "/to-ok": (302, {"Location": "/ok"}),
        "/ok": (200, {}),
        "/to-bad": (301, {"Location": f"http://127.0.0.1:{http_server.port}/bad"}),
        "/bad": (503, {}),
        "/elsewhere": (302, {"Location": "http://127.0.0.3:9/"}),  # another host: not followed
        "/loop": (302, {"Location": "/loop"}),
    }
    for name in ("to-ok", "to-bad", "elsewhere", "loop"):
        sync(prober, {"readinessProbe": http_probe(http_server.port, path=f"/{name}")},
             started_at=clock.now(), container=name)
    prober.run_due()
    assert st(prober, "to-ok").ready
    assert not st(prober, "to-bad").ready and "statuscode: 503" in st(prober, "to-bad").message
    assert st(prober, "elsewhere").ready
    assert not st(prober, "loop").ready and "stopped after 10 redirects" in st(prober, "loop").message
    assert [p for p, _ in http_server.requests].count("/loop") == 11


def test_https_is_probed_without_verifying_the_certificate(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=example.invalid"], check=True, capture_output=True)
    server = FlipServer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
    try:
        prober, clock, _ = make_prober()
        probe = {"httpGet": {"path": "/", "port": server.port, "scheme": "HTTPS"}}
        sync(prober, {"readinessProbe": probe}, started_at=clock.now())
        prober.run_due()
        assert st(prober).ready, st(prober).message
        server.status = 500
        sync(prober, {"readinessProbe": {**probe, "failureThreshold": 1}}, started_at=clock.now(), container="b")
        prober.run_due()
        assert "statuscode: 500" in st(prober, "b").message
    finally:
        server.close()


# -- bookkeeping ------------------------------------------------------------------------------------------------
def test_sync_is_idempotent_and_forget_drops_the_pod(http_server):
    prober, clock, rec = make_prober()
    spec = {"readinessProbe": http_probe(http_server.port)}
    sync(prober, spec, started_at=clock.now())
    prober.run_due()
    for _ in range(3):
        sync(prober, spec, started_at=clock.now() - 0)  # same start time: nothing resets
    assert st(prober).ready and len(rec.changes) == 2  # tracked, ready
    prober.forget_pod(POD)
    assert not st(prober).ready
    clock.advance(60)
    assert prober.run_due() == 0


def test_a_result_from_before_a_restart_is_thrown_away():
    prober, clock, _ = make_prober()
    entered, release = threading.Event(), threading.Event()

    def blocking(command: list[str], timeout: float) -> tuple[int, str]:
        entered.set()
        assert release.wait(10)
        return 1, "old container is dead"

    spec = {"livenessProbe": {"exec": {"command": ["check"]}, "failureThreshold": 1}}
    sync(prober, spec, started_at=clock.now(), tgt=target(exec_fn=blocking))
    runner = threading.Thread(target=prober.run_due)
    runner.start()
    assert entered.wait(10)
    sync(prober, spec, started_at=clock.now() + 1, tgt=target(exec_fn=blocking))  # restarted meanwhile
    release.set()
    runner.join(10)
    assert not runner.is_alive()
    assert st(prober) == ContainerProbeState(ready=True, started=True, restart_needed=False, message="")


# -- background scheduling on the real clock --------------------------------------------------------------------
def test_background_probing_with_a_slow_probe_alongside(http_server):
    clock = SystemClock()
    changed = threading.Event()
    prober = Prober(clock=clock, on_change=lambda key: changed.set(), workers=2)
    gate = threading.Event()
    lock = threading.Lock()
    active = {"now": 0, "max": 0, "calls": 0}

    def slow_exec(command: list[str], timeout: float) -> tuple[int, str]:
        with lock:
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
            active["calls"] += 1
        gate.wait(min(timeout, 10))  # hangs until the test lets go
        with lock:
            active["now"] -= 1
        return 0, ""

    now = clock.now()
    sync(prober, {"readinessProbe": http_probe(http_server.port, periodSeconds=0.05, failureThreshold=2)},
         started_at=now)
    sync(prober, {"livenessProbe": {"exec": {"command": ["slow"]}, "periodSeconds": 0.01, "timeoutSeconds": 30}},
         started_at=now, tgt=target(exec_fn=slow_exec), container="slow")
    prober.start()
    try:
        wait_for(lambda: st(prober).ready, what="ready")
        assert changed.is_set()
        wait_for(lambda: active["calls"] == 1, what="the slow probe to start")
        requests_before = len(http_server.requests)
        http_server.status = 503
        wait_for(lambda: not st(prober).ready, what="not ready")  # while the slow probe still hangs
        assert len(http_server.requests) >= requests_before + 2
        http_server.status = 200
        wait_for(lambda: st(prober).ready, what="ready again")
        assert active["calls"] == 1  # never handed out again while it runs
        gate.set()
        wait_for(lambda: active["calls"] >= 3, what="the slow probe to run again")
        assert active["max"] == 1
    finally:
        gate.set()
        prober.stop()
    calls = len(http_server.requests)
    time.sleep(0.2)  # a quiet spell to show nothing is scheduled after stop()
    assert len(http_server.requests) <= calls + 1  # at most one probe already in flight
