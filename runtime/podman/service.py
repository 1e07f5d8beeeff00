"""Running a podman API service: the local node's endpoint when nobody runs one for us.

Design: the daemon talks to podman only through its REST API. On a host where
systemd's ``podman.socket`` is not active (or systemd is not PID 1 at all) nobody
answers on the default socket, so the daemon starts ``podman system service``
itself (``ensure_local_service``). Tests want the opposite: a private engine
with its own storage and socket (``PodmanService`` with ``root``/``runroot``), so
they never see or disturb the host's pods. Readiness is ``GET /_ping`` answered
``OK`` over the unix socket, waited for with a deadline.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket as socketlib
import subprocess
import time
from pathlib import Path

from runtime.driver import DriverError

ROOTFUL_SOCKET = Path("/run/podman/podman.sock")
MAX_RUNROOT_LENGTH = 50  # podman 4.3: "the specified runroot is longer than 50 characters"
LIBPOD_TMPDIR = "libpod-tmp"  # a private runroot's libpod --tmpdir (its events log too: podman/eventsfile.py)


class PodmanServiceError(DriverError):
    """``podman system service`` could not be started or did not answer."""


def default_socket_url() -> str:
    """The URL of podman's default API socket for the current user."""
    if os.geteuid() == 0:
        return f"unix://{ROOTFUL_SOCKET}"
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
    return f"unix://{Path(runtime_dir) / 'podman' / 'podman.sock'}"


def socket_path(url: str) -> Path:
    """The filesystem path of a ``unix://`` URL."""
    if not url.startswith("unix://"):
        raise ValueError(f"{url!r} is not a unix:// URL.")
    return Path(url[len("unix://"):])


def ping_socket(path: Path, *, timeout: float = 2.0) -> bool:
    """True when a podman service answers ``GET /_ping`` with OK on the unix socket ``path``.

    A raw HTTP/1.0 request keeps this free of any client library, so it can run
    before (or instead of) building a driver.
    """
    try:
        with socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
            reply = b""
            while len(reply) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return False
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    return len(status_line) >= 2 and status_line[1] == b"200" and body.strip() == b"OK"


def _podman_binary() -> str:
    binary = shutil.which("podman")
    if binary is None:
        raise PodmanServiceError("podman is not installed (run scripts/setup-host.sh).")
    return binary


def _wait_for_ping(*, path: Path, deadline: float, process: subprocess.Popen[bytes] | None,
                   log_path: Path | None) -> None:
    while True:
        if ping_socket(path, timeout=1.0):
            return
        if process is not None and process.poll() is not None:
            raise PodmanServiceError(
                f"podman system service exited with status {process.returncode} before answering on {path}"
                + (f"; see {log_path}" if log_path else "") + ".")
        if time.monotonic() >= deadline:
            raise PodmanServiceError(f"podman system service did not answer on {path} in time.")
        # Short poll: the service usually answers within a few hundred milliseconds.
        time.sleep(0.05)


class PodmanService:
    """One ``podman system service`` child process on its own socket.

    ``root``/``runroot`` (``None``: podman's defaults) select the storage; a
    private ``runroot`` also gets a private libpod ``--tmpdir``, so two services
    never share pod/container state. ``containers_conf`` is passed as
    ``CONTAINERS_CONF`` for engine settings that differ from the host's.
    """

    def __init__(self, *, root: Path | None = None, runroot: Path | None = None, socket: Path,
                 containers_conf: Path | None = None, log_path: Path | None = None) -> None:
        self.root = root
        self.runroot = runroot
        self.socket = socket
        self.containers_conf = containers_conf
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def command(self) -> list[str]:
        """The podman command line this service runs (also useful for CLI calls on the same storage)."""
        return [_podman_binary(), *self.storage_args(), "system", "service", "--time=0", self.url]

    def storage_args(self) -> list[str]:
        """Global podman flags that select this service's storage, for direct CLI use."""
        args: list[str] = []
        if self.root is not None:
            args += ["--root", str(self.root)]
        if self.runroot is not None:
            args += ["--runroot", str(self.runroot), "--tmpdir", str(self.runroot / LIBPOD_TMPDIR)]
        return args

    def start(self, *, timeout: float = 30.0) -> str:
        """Start the service and wait until it answers; returns its URL."""
        if self._process is not None and self._process.poll() is None:
            return self.url
        if self.runroot is not None and len(str(self.runroot)) > MAX_RUNROOT_LENGTH:
            raise PodmanServiceError(f"podman refuses a runroot longer than {MAX_RUNROOT_LENGTH} characters: "
                                     f"{self.runroot}.")
        for directory in (self.root, self.runroot, self.socket.parent):
            if directory is not None:
                directory.mkdir(parents=True, exist_ok=True)
        # A stale socket file from a killed service would make the ping fail oddly.
        self.socket.unlink(missing_ok=True)
        env = dict(os.environ)
        if self.containers_conf is not None:
            env["CONTAINERS_CONF"] = str(self.containers_conf)
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                start_new_session=True)  # our Ctrl-C must not reach it before we stop it cleanly
        finally:
            if self.log_path:
                log.close()  # type: ignore[union-attr]
        try:
            _wait_for_ping(path=self.socket, deadline=time.monotonic() + timeout,
                           process=self._process, log_path=self.log_path)
        except PodmanServiceError:
            self.stop()
            raise
        return self.url

    def stop(self, *, timeout: float = 15.0) -> None:
        """SIGTERM the service, SIGKILL it if it lingers. Containers keep running (conmon owns them)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)

    def __enter__(self) -> PodmanService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ensure_local_service(*, url: str | None = None, timeout: float = 30.0,
                         log_path: Path | None = None) -> str:
    """Return the URL of the local podman API, starting ``podman system service`` on it if none answers.

    The started service is detached (its own session) and outlives the caller on
    purpose: like the systemd socket it stands in for, it is the host's service,
    and the next daemon start finds it answering.
    """
    url = url or default_socket_url()
    path = socket_path(url)
    if ping_socket(path):
        return url
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        process = subprocess.Popen(
            [_podman_binary(), "system", "service", "--time=0", url],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    finally:
        if log_path:
            log.close()  # type: ignore[union-attr]
    _wait_for_ping(path=path, deadline=time.monotonic() + timeout, process=process, log_path=log_path)
    return url
