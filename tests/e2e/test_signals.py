"""systemd's side of the daemon without systemd: sd_notify datagrams on a socket the test
binds (READY, STATUS, WATCHDOG, RELOADING, STOPPING), SIGHUP reloads, SIGTERM stops, the
watchdog that pings only on progress, and config errors that name the key."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from reconciler.core.clock import ManualClock, SystemClock
from reconciler.core.workqueue import WorkQueue
from reconciler.daemon.systemd import Notifier, ProgressWatchdog, notify
from runtime.podman.driver import PodmanDriver
from tests.harness.cli_server import run_cli
from tests.harness.daemon_harness import (  # noqa: E402
    REPO_ROOT,
    commit,
    daemon_settings,
    free_port,
    http_get,
    init_repo,
    wait_for,
)


class NotifySocket:
    """A bound datagram socket standing in for systemd's $NOTIFY_SOCKET; collects messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._lock:
                self.messages.append((time.monotonic(), fields))

    def with_key(self, key: str, *, since: int = 0) -> list[dict[str, str]]:
        with self._lock:
            return [m for _, m in self.messages[since:] if key in m]

    def count(self) -> int:
        with self._lock:
            return len(self.messages)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


# --------------------------------------------------------------------------- units


def test_notifier_speaks_sd_notify_on_path_and_abstract_sockets(tmp_path, monkeypatch):
    box = NotifySocket(tmp_path / "notify.sock")
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", str(box.path))
        notifier = Notifier()
        notifier.ready("applied abc\nwith a second line")
        notifier.reloading()
        notifier.stopping()
        wait_for(lambda: box.count() == 3, timeout=5, what="three datagrams")
        ready, reloading, stopping = (m for _, m in box.messages)
        assert ready == {"READY": "1", "STATUS": "applied abc with a second line"}
        assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
        assert stopping["STOPPING"] == "1"
    finally:
        box.close()
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"reconciler-test-{os.getpid()}"
    abstract.bind("\0" + name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("WATCHDOG=1")
        assert abstract.recv(100) == b"WATCHDOG=1"
    finally:
        abstract.close()
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert notify("READY=1") is False  # not under systemd: a quiet no-op


class RecordingNotifier(Notifier):
    def __init__(self) -> None:
        self.pings = 0

    def watchdog(self) -> None:
        self.pings += 1


def test_watchdog_pings_only_while_the_queues_make_progress():
    """A real work queue whose only worker blocks: once work has waited longer than half the
    watchdog interval, no more pings; once the worker finishes, pings again."""
    release = threading.Event()
    entered = threading.Event()

    def handler(key):
        if key == "stuck":
            entered.set()
            release.wait(timeout=30)
        return None

    queue = WorkQueue(name="deployment", handler=handler, workers=1, clock=SystemClock())
    notifier = RecordingNotifier()
    watchdog = ProgressWatchdog(queues=lambda: [queue], now=SystemClock().now, notifier=notifier, interval=0.6)
    assert watchdog.stall_after == pytest.approx(0.3)
    queue.start()
    try:
        time.sleep(0.05)
        assert watchdog.check().ok and notifier.pings == 1  # idle is healthy
        queue.add("stuck")
        assert entered.wait(timeout=5)
        queue.add("waiting")
        health = wait_for(lambda: (h := watchdog.check()) and not h.ok and h, timeout=5, interval=0.05,
                          what="the stuck queue to be reported")
        assert health.stalled == ("deployment",)
        pings = notifier.pings
        for _ in range(5):
            watchdog.check()
        assert notifier.pings == pings, "pinged while the reconcile loop was stuck"
        release.set()
        wait_for(lambda: watchdog.check().ok, timeout=5, interval=0.05, what="the queue to recover")
        assert notifier.pings > pings
    finally:
        release.set()
        queue.stop()


def test_watchdog_without_systemd_still_judges_health(monkeypatch):
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    clock = ManualClock()
    queue = WorkQueue(name="scheduler", handler=lambda key: None, clock=clock)
    watchdog = ProgressWatchdog(queues=lambda: [queue], now=clock.now, notifier=RecordingNotifier())
    assert not watchdog.enabled
    queue.add("pod")
    clock.advance(watchdog.stall_after + 1)
    assert not watchdog.check().ok
    queue.run_until_idle()
    assert watchdog.check().ok


@pytest.mark.parametrize("text, key", [
    ("source: {repo: /srv/x}\nnodez: []\n", "nodez"),
    ("source: {repo: /srv/x, interval: [1]}\n", "source.interval"),
    ("source: {repo: /srv/x}\nnodes: [{name: n1, url: 'unix:///x', podCIDR: nope}]\n", "nodes[0].podCIDR"),
])
def test_config_error_at_start_up_names_the_key(tmp_path, text, key):
    config = tmp_path / "config.yaml"
    config.write_text(text)
    result = run_cli(["daemon", "--config", str(config), "--state-dir", str(tmp_path / "state")], timeout=60,
                     cwd=REPO_ROOT)  # forked warm (cli_server): it exits while reading its config
    assert result.returncode == 2, result.stderr
    assert key in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- the real daemon

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: sig
spec:
  replicas: 2
  selector:
    matchLabels: {{app: sig}}
  template:
    metadata:
      labels: {{app: sig}}
    spec:
      terminationGracePeriodSeconds: 3
      containers:
        - name: web
          image: {image}
          ports: [{{containerPort: 8080}}]
"""


class NotifiedDaemon:
    """`reconciler daemon --config FILE` with $NOTIFY_SOCKET and $WATCHDOG_USEC, as systemd starts it."""

    def __init__(self, *, base: Path, repo: Path, node_url: str, box: NotifySocket) -> None:
        self.base = base
        self.config_path = base / "config.yaml"
        self.state_dir = base / "state"
        self.repo = repo
        self.node_url = node_url
        self.box = box
        self.metrics_port = free_port()
        self.log_path = base / "daemon.log"
        self.proc: subprocess.Popen | None = None

    def config(self, **extra: object) -> dict:
        doc: dict = {"source": {"repo": str(self.repo), "branch": "main", "interval": "1h"},
                     "stateDir": str(self.state_dir), "metricsListen": f"127.0.0.1:{self.metrics_port}",
                     **daemon_settings({"node1": self.node_url})}
        for key, value in extra.items():
            if key == "interval":
                doc["source"]["interval"] = value
            else:
                doc[key] = value
        return doc

    def write_config(self, doc: dict) -> None:
        self.config_path.write_text(json.dumps(doc))

    def start(self) -> NotifiedDaemon:
        env = {**os.environ, "NOTIFY_SOCKET": str(self.box.path), "WATCHDOG_USEC": "8000000"}
        env.pop("WATCHDOG_PID", None)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "reconciler", "daemon", "--config", str(self.config_path)],
                                     stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
        return self

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(["--state-dir", str(self.state_dir), *args], timeout=60, cwd=REPO_ROOT)  # forked warm

    def json(self, *args: str) -> dict:
        result = self.cli(*args, "-o", "json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metric(self, name: str) -> float | None:
        for line in http_get(f"http://127.0.0.1:{self.metrics_port}/metrics").splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None


@pytest.mark.podman
def test_notify_reload_and_stop_on_a_real_daemon(tmp_path, podman_node, images):
    podman_node.remove_everything()
    repo = tmp_path / "repo"
    first = init_repo(repo, {"app.yaml": MANIFEST.format(image=images.hello_v1)}, message="sig v1")
    box = NotifySocket(tmp_path / "notify.sock")
    daemon = NotifiedDaemon(base=tmp_path, repo=repo, node_url=podman_node.url, box=box)
    daemon.write_config(daemon.config())
    driver = PodmanDriver(url=podman_node.url)

    def fingerprint():
        return sorted((p.name, p.uid, tuple((c.container_id, c.started_at, c.state) for c in p.containers))
                      for p in driver.list_pods())

    def running_pods():
        pods = driver.list_pods()
        return len(pods) == 2 and all(c.state == "running" for p in pods for c in p.containers)

    try:
        daemon.start()
        # READY=1 comes once the first sync is done, and its STATUS names the applied commit.
        ready = wait_for(lambda: box.with_key("READY"), timeout=60, what="READY=1")[0]
        assert first[:12] in ready["STATUS"], ready
        # lastAppliedCommit waits for the health check (the pods ready); STATUS follows it.
        wait_for(lambda: daemon.json("status")["lastAppliedCommit"] == first, timeout=90, what="the first commit healthy")
        wait_for(lambda: any(f'applied {first[:12]}' in m["STATUS"] for m in box.with_key("STATUS")), timeout=30,
                 what="STATUS naming the applied commit")
        # The watchdog is fed (8 s interval: a ping every 2 s) while the loop makes progress.
        wait_for(lambda: len(box.with_key("WATCHDOG")) >= 2, timeout=20, what="two WATCHDOG=1 pings")
        wait_for(running_pods, timeout=90, what="2 running pods")
        wait_for(lambda: daemon.metric("reconciler_source_poll_interval_seconds") == 3600.0, timeout=10,
                 what="the poll interval in /metrics")
        before = fingerprint()

        # STATUS follows each sync.
        second = commit(repo, {"README.md": "docs only\n"}, message="docs")
        wait_for(lambda: any(second[:12] in m["STATUS"] for m in box.with_key("STATUS")), timeout=30,
                 what="STATUS naming the second commit")

        # SIGHUP with a new interval: RELOADING=1, then READY=1; the interval changes, pods do not.
        mark = box.count()
        daemon.write_config(daemon.config(interval="3s"))
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: box.with_key("READY", since=mark), timeout=30, what="READY=1 after the reload")
        kinds = [next(iter(m)) for _, m in box.messages[mark:] if "RELOADING" in m or "READY" in m]
        assert kinds[:2] == ["RELOADING", "READY"], kinds
        wait_for(lambda: daemon.metric("reconciler_source_poll_interval_seconds") == 3.0, timeout=10,
                 what="the new poll interval in /metrics")
        assert "source.interval: 3600s -> 3s" in daemon.log_text()
        assert fingerprint() == before, "the reload touched the pods"

        # SIGHUP with a changed node list (a new label): the controllers and node agents are
        # rebuilt, the pods are not touched, and the rebuilt loop still reconciles.
        mark = box.count()
        relabelled = daemon.config(interval="3s")
        relabelled["nodes"][0]["labels"] = {"disk": "ssd"}
        relabelled["nodePortAddress"] = "127.0.0.2"  # not reloadable: kept, and said so
        daemon.write_config(relabelled)
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: box.with_key("READY", since=mark), timeout=30, what="READY=1 after the node reload")
        kept = [json.loads(line) for line in daemon.log_text().splitlines() if "changes only at the next start" in line]
        assert kept and kept[-1]["key"] == "node_port_address" and kept[-1]["running"] == "127.0.0.1", kept
        wait_for(lambda: daemon.json("get", "nodes")["items"][0]["metadata"]["labels"].get("disk") == "ssd",
                 timeout=20, what="the node's new label")
        assert fingerprint() == before, "rebuilding the node agents touched the pods"
        third = commit(repo, {"app.yaml": MANIFEST.format(image=images.hello_v1).replace("replicas: 2", "replicas: 3")},
                       message="three")
        wait_for(lambda: len(driver.list_pods()) == 3 and all(c.state == "running" for p in driver.list_pods()
                                                              for c in p.containers),
                 timeout=60, what="the rebuilt controllers to scale to 3 pods")
        wait_for(lambda: daemon.json("status")["lastAppliedCommit"] == third, timeout=60, what="commit 3 applied")
        before = fingerprint()
        second = third

        # SIGHUP with an unknown key: logged naming the key, the running configuration kept.
        mark = box.count()
        bad = relabelled
        bad["nodez"] = []
        daemon.write_config(bad)
        daemon.proc.send_signal(signal.SIGHUP)
        reply = wait_for(lambda: box.with_key("READY", since=mark), timeout=30, what="READY=1 after a bad reload")
        assert "reload failed" in reply[0]["STATUS"] and "nodez" in reply[0]["STATUS"]
        wait_for(lambda: "configuration reload failed" in daemon.log_text(), timeout=10, what="the failure logged")
        failure = [line for line in daemon.log_text().splitlines() if "configuration reload failed" in line][-1]
        assert "nodez" in failure
        assert daemon.proc.poll() is None, "a bad config file on reload must not stop the daemon"
        assert daemon.metric("reconciler_source_poll_interval_seconds") == 3.0
        assert daemon.json("status")["lastAppliedCommit"] == second
        assert fingerprint() == before

        # SIGTERM: STOPPING=1, exit 0 within 10 s, pods left running.
        del bad["nodez"]
        daemon.write_config(bad)
        mark = box.count()
        started = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 10
        assert box.with_key("STOPPING", since=mark)
        assert fingerprint() == before, "stopping the daemon touched the pods"

        # A second start picks up where it stopped: same commit, same pods, READY again.
        mark = box.count()
        daemon.start()
        ready = wait_for(lambda: box.with_key("READY", since=mark), timeout=60, what="READY=1 after a restart")[0]
        assert second[:12] in ready["STATUS"]
        end = time.monotonic() + 4  # a few relist periods
        while time.monotonic() < end:
            assert fingerprint() == before, "the restarted daemon touched the pods"
            time.sleep(0.5)
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.proc.send_signal(signal.SIGTERM)
            try:
                daemon.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                daemon.proc.kill()
        box.close()
        podman_node.remove_everything()
