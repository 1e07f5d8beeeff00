"""A real 3-member etcd cluster on loopback ports, for the etcd store and leader-election tests.

Debian's `etcd-server` (installed by scripts/setup-host.sh) is started three times as
separate processes, each with its own client and peer port (free ports picked by the
kernel) and its data dir under a temp dir, so the tests exercise the real thing: Raft,
a member lost and back, the whole cluster down and up.

Use it as a pytest fixture or as a context manager:

    from tests.harness.etcd import etcd_cluster  # noqa: F401  (the session-wide cluster)

    def test_x(etcd_cluster, etcd_prefix): ...   # etcd_prefix: a fresh key prefix per test

    with EtcdCluster(tmp_path) as cluster:       # a private one, for tests that break it
        cluster.kill_member(0); cluster.restart_member(0)

Why it looks like this:
- One cluster per session (`etcd_cluster`), shared by tests that each write under their
  own prefix (`etcd_prefix`): starting three members costs ~1 s and tests are many.
  Tests that stop the whole cluster, or leave a member down, make their own
  (`EtcdCluster(...)` or the module-scoped `private_etcd_cluster`).
- Short Raft timers (heartbeat 50 ms, election 500 ms) so a lost leader is replaced in
  well under a second and failover tests stay fast; production keeps etcd's defaults.
- Everything is stopped (SIGTERM, then SIGKILL) and the data removed on exit, also when
  a test fails; the processes run in their own session so none is left behind by a
  Ctrl-C of pytest either (they die with the fixture's finaliser or at the latest when
  `close()` runs from atexit).
- Skips (with the reason) only when the etcd binary is missing: setup-host installs it,
  so CI runs these tests.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
START_TIMEOUT = 20.0


def etcd_installed() -> bool:
    return os.access(ETCD, os.X_OK)


def skip_unless_etcd() -> None:
    if not etcd_installed():
        pytest.skip("etcd is not installed (Debian's etcd-server; scripts/setup-host.sh installs it)")


def _free_ports(count: int) -> list[int]:
    """Ports the kernel says are free now (kept bound until all are picked, so no repeats)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class EtcdMember:
    """One etcd process: its name, ports, data dir and (while running) its process."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        """host:port, as `etcd://` URLs and `store copy --to` take it."""
        return f"127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class EtcdCluster:
    """A 3-member (or `size`) etcd cluster on loopback; see the module docstring."""

    def __init__(self, base_dir: Path | str | None = None, *, size: int = 3) -> None:
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir) if base_dir is not None else Path(tempfile.mkdtemp(prefix="etcd-"))
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.token = f"reconciler-test-{uuid.uuid4().hex[:8]}"
        ports = _free_ports(2 * size)
        self.members = [
            EtcdMember(name=f"m{i}", client_port=ports[2 * i], peer_port=ports[2 * i + 1],
                       data_dir=self.base_dir / f"m{i}", log_path=self.base_dir / f"m{i}.log")
            for i in range(size)
        ]
        self._closed = False
        atexit.register(self.close)

    # -- addresses ---------------------------------------------------------------------
    @property
    def endpoints(self) -> list[str]:
        """Client URLs of every member: http://127.0.0.1:PORT."""
        return [m.client_url for m in self.members]

    @property
    def hostports(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def url(self, prefix: str = "") -> str:
        """etcd://HOST:PORT,HOST:PORT,HOST:PORT[/prefix], the form `store copy --to` takes."""
        return "etcd://" + ",".join(self.hostports) + (("/" + prefix.strip("/")) if prefix.strip("/") else "")

    # -- life cycle --------------------------------------------------------------------
    def start(self) -> EtcdCluster:
        """Start every member not running and wait until the cluster has a leader."""
        for i, m in enumerate(self.members):
            if not m.running:
                self._spawn(i)
        self.wait_healthy()
        return self

    def stop(self) -> None:
        """Stop every member (SIGTERM, SIGKILL after 5 s); the data stays for `start()`."""
        for m in self.members:
            self._terminate(m, signal.SIGTERM)

    def kill_member(self, index: int) -> None:
        """SIGKILL one member, as a crash would (its data stays)."""
        self._terminate(self.members[index], signal.SIGKILL)

    def stop_member(self, index: int) -> None:
        self._terminate(self.members[index], signal.SIGTERM)

    def start_member(self, index: int, *, wait: bool = True) -> None:
        """Start a stopped member again from its data dir; waits until it answers healthily."""
        m = self.members[index]
        if not m.running:
            self._spawn(index)
        if wait:
            self.wait_member_healthy(index)

    def restart_member(self, index: int, *, kill: bool = True) -> None:
        """Kill (or stop) one member and start it again; returns once it is healthy."""
        if kill:
            self.kill_member(index)
        else:
            self.stop_member(index)
        self.start_member(index)

    def close(self) -> None:
        """Stop everything and remove the data (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for m in self.members:
            self._terminate(m, signal.SIGKILL)
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- health ------------------------------------------------------------------------
    def member_healthy(self, index: int) -> bool:
        m = self.members[index]
        if not m.running:
            return False
        try:
            with urllib.request.urlopen(m.client_url + "/health", timeout=2) as resp:
                return bool(json.loads(resp.read()).get("health") in ("true", True))
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def wait_member_healthy(self, index: int, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self.member_healthy(index):
            m = self.members[index]
            if m.proc is not None and m.proc.poll() is not None:
                raise RuntimeError(f"etcd member {m.name} exited ({m.proc.returncode}): {self.log_tail(index)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"etcd member {m.name} not healthy after {timeout}s: {self.log_tail(index)}")
            time.sleep(0.05)

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """Every running member answers /health with a leader elected."""
        for i, m in enumerate(self.members):
            if m.running or m.proc is not None:
                self.wait_member_healthy(i, timeout)

    def log_tail(self, index: int, lines: int = 15) -> str:
        try:
            return "\n".join(self.members[index].log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- internals ---------------------------------------------------------------------
    def _spawn(self, index: int) -> None:
        m = self.members[index]
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        state = "existing" if (m.data_dir / "member").exists() else "new"
        args = [
            ETCD,
            "--name", m.name,
            "--data-dir", str(m.data_dir),
            "--listen-client-urls", m.client_url,
            "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url,
            "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", initial,
            "--initial-cluster-state", state,
            "--initial-cluster-token", self.token,
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            "--logger", "zap",
            "--log-level", "warn",
        ]
        log = open(m.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            m.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        finally:
            log.close()

    @staticmethod
    def _terminate(m: EtcdMember, sig: signal.Signals) -> None:
        proc = m.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(5)
        m.proc = None


# -- pytest fixtures ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """The session's shared 3-member cluster. Tests that restart one member must leave it
    running again (`restart_member` does); tests that stop the whole cluster use their own."""
    skip_unless_etcd()
    with EtcdCluster(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def private_etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """A cluster of the module's own, for tests that take it down."""
    skip_unless_etcd()
    with EtcdCluster(tmp_path_factory.mktemp("etcd-private")) as cluster:
        yield cluster


@pytest.fixture()
def etcd_prefix() -> str:
    """A key prefix no other test uses: /test-<random>."""
    return f"/test-{uuid.uuid4().hex[:12]}"
