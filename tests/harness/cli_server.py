"""The `reconciler` CLI for the e2e tests, run as a fork of a process that imported it once.

What: ``run_cli(args)`` behaves as ``subprocess.run([python, "-m", "reconciler", *args],
capture_output=True, text=True)``: a new process (its own pid, fds, environment, cwd and exit
code) runs the CLI's ``main()`` with ``sys.argv`` set as ``python -m`` sets it, and its stdout
and stderr come back in a ``CompletedProcess``. The process is forked from a server that
imported ``reconciler.kubectl.cli`` once (``python -m tests.harness.cli_server SOCKET``).

Why: a fresh ``python -m reconciler`` spends ~1 s of CPU importing (the CLI module imports
every verb, ``daemon`` and ``node`` included), and the e2e tests call it over and over, mostly
while they poll for a condition, on a 2-CPU machine where that CPU is taken from the daemon and
the podman services the test waits for (measured: ~1.1 s of CPU a fresh call, ~0.03 s forked).
Nothing a command sees differs from a fresh process: the CLI reads no environment at import
time (it reads ``os.environ`` when a command runs, and the child has the caller's), the child
runs the ``atexit`` functions and flushes its streams on the way out as the interpreter does;
``random`` reseeds itself in a forked child. The real entry point is still run as a subprocess
where that is the point (test_cli_verbs' ``reconciler`` and ``Watch``, test_systemd_unit,
tests/unit/kubectl/test_watch.py), and ``RECONCILER_TEST_CLI_FORK=0`` makes every call one.

How: the server accepts on a Unix SOCK_SEQPACKET socket (messages keep their bounds) and forks
once per connection, at once, so calls from several test threads run side by side. The client
sends the request (argv, environment, cwd) with three file descriptors (SCM_RIGHTS): its stdin
and two temporary files for stdout and stderr. The child answers its pid (so a caller's timeout
can kill it, as ``subprocess.run`` kills on timeout), runs the command, and answers its exit
code. No library does this (a "zygote" is usually a framework's internals), hence by hand.
The server exits when its parent (the pytest process) is gone, and ``atexit`` stops it.
"""
from __future__ import annotations

import atexit
import json
import locale
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120.0  # importing the CLI on a loaded 2-CPU machine has taken 10 s; a margin over that
_MAX_MESSAGE = 1 << 20
FRESH_ENV = "RECONCILER_TEST_CLI_FORK"


# --------------------------------------------------------------------------- server side


def _exit_code(exc: SystemExit) -> int:
    """What the interpreter makes of ``sys.exit(value)``."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _child(conn: socket.socket) -> None:
    """Run one command in this forked process and leave with its exit code (never returns)."""
    code = 1
    try:
        message, fds, _flags, _addr = socket.recv_fds(conn, _MAX_MESSAGE, 3)
        request = json.loads(message)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [request["argv0"], *request["args"]]
        conn.send(json.dumps({"pid": os.getpid()}).encode())
        from reconciler.kubectl.cli import main

        try:
            code = main()
        except SystemExit as exc:
            code = _exit_code(exc)
        try:
            atexit._run_exitfuncs()
        except SystemExit as exc:
            code = _exit_code(exc)
    except BaseException:  # a fault of this harness, not of the CLI: say so where the test looks
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        try:
            conn.send(json.dumps({"code": code}).encode())
        except OSError:
            pass
        os._exit(code & 0xFF)


def serve(path: str) -> None:
    """Import the CLI, then fork a child per connection until the parent process is gone."""
    import reconciler.kubectl.cli  # noqa: F401  (the point of this process: imported once, for every child)

    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path + ".tmp")
    listener.listen(128)
    os.rename(path + ".tmp", path)  # the socket appears once it accepts
    listener.settimeout(1.0)
    while os.getppid() == parent:
        _reap()
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        except InterruptedError:
            continue
        if os.fork() == 0:
            listener.close()
            conn.settimeout(None)
            _child(conn)
        conn.close()


def _reap() -> None:
    """Collect the children that ended. Reaped here, not by SIGCHLD=SIG_IGN, so that their CPU
    time is counted in this process's children's time, and so in the test session's."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


# --------------------------------------------------------------------------- client side


class _Server:
    """The server process of this test session, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None
        self.path: str | None = None

    def socket_path(self) -> str:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None and self.path is not None:
                return self.path
            self._start()
            assert self.path is not None
            return self.path

    def _start(self) -> None:
        self.stop()
        self._dir = tempfile.mkdtemp(prefix="rc-cli-")
        self.path = os.path.join(self._dir, "cli.sock")
        log = open(os.path.join(self._dir, "server.log"), "ab")  # noqa: SIM115 (the child's stderr)
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "tests.harness.cli_server", self.path],
                                          cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not os.path.exists(self.path):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                text = Path(self._dir, "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the CLI server did not start: {text}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._dir is not None:
            for name in ("cli.sock", "cli.sock.tmp", "server.log"):
                try:
                    os.unlink(os.path.join(self._dir, name))
                except OSError:
                    pass
            try:
                os.rmdir(self._dir)
            except OSError:
                pass
            self._dir = None


_SERVER = _Server()
atexit.register(_SERVER.stop)


def _text(data: bytes) -> str:
    """As ``subprocess.run(text=True)`` decodes: the locale's encoding, universal newlines."""
    return data.decode(locale.getpreferredencoding(False)).replace("\r\n", "\n").replace("\r", "\n")


def run_cli(args: list[str], *, cwd: Path | str = REPO_ROOT, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m reconciler ARGS`` (capture_output, text), forked from the warm server.

    With ``RECONCILER_TEST_CLI_FORK=0`` in the environment it is that very subprocess, a fresh
    interpreter per call: to tell a difference apart, or to measure what the server saves.
    """
    cmd = [sys.executable, "-m", "reconciler", *args]
    if os.environ.get(FRESH_ENV) == "0":
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    request: dict[str, Any] = {"args": list(args), "cwd": str(cwd), "env": dict(os.environ if env is None else env),
                               "argv0": str(REPO_ROOT / "reconciler" / "__main__.py")}
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn:
        conn.settimeout(timeout)
        conn.connect(_SERVER.socket_path())
        socket.send_fds(conn, [json.dumps(request).encode()], [0, out.fileno(), err.fileno()])
        pid = int(json.loads(conn.recv(4096))["pid"])
        try:
            conn.settimeout(max(0.001, deadline - time.monotonic()))
            reply = conn.recv(4096)
        except TimeoutError:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            raise subprocess.TimeoutExpired(cmd, timeout) from None
        # No reply: the child was killed by a signal before it could answer (as a negative returncode would say).
        code = int(json.loads(reply)["code"]) & 0xFF if reply else -signal.SIGKILL
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, code, _text(out.read()), _text(err.read()))


if __name__ == "__main__":
    serve(sys.argv[1])
