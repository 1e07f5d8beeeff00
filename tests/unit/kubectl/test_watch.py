"""`get -w` against a real API server and store: the table, then a row per change (and a
document per change with -o json|name|jsonpath), ended by Ctrl-C with no traceback; a
daemon gone silent is exit 3 with one sentence. The CLI runs as a subprocess, as a user
runs it, so Ctrl-C is a real SIGINT."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.apiserver.server import ApiServer
from reconciler.kubectl.cli import main
from reconciler.kubectl.commands import watch as watch_module
from reconciler.store.store import Store
from tests.unit.kubectl.test_cli import Actions, pod, state_dir  # noqa: F401 (fixture)

REPO_ROOT = Path(__file__).resolve().parents[3]


class Watcher:
    """`reconciler get ... -w` in a subprocess, its stdout read line by line."""

    def __init__(self, state: Path, *args: str) -> None:
        env = {**os.environ, "RECONCILER_STATE_DIR": str(state), "PYTHONPATH": str(REPO_ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "reconciler", "get", *args], cwd=REPO_ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, predicate, *, what: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"no line with {what} within {timeout}s; saw {self.seen!r}")

    def interrupt(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=15)
        self._reader.join(timeout=15)  # everything it printed is in `seen` from here on
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=15)


@pytest.fixture
def served(state_dir: Path) -> Iterator[Store]:
    store = Store(state_dir / "store.db")
    store.put(pod("web-1"))
    server = ApiServer(store=store, socket_path=state_dir / "api.sock", actions=Actions())
    server.start()
    yield store
    server.stop()
    store.close()


def test_watch_prints_the_table_then_a_row_per_change_until_ctrl_c(served: Store, state_dir: Path) -> None:
    watcher = Watcher(state_dir, "pods", "-w")
    try:
        header = watcher.expect(lambda line: line.startswith("NAME"), what="the header")
        assert header.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        first = watcher.expect(lambda line: line.startswith("web-1"), what="the pod that exists")
        assert first.split()[1:3] == ["1/1", "Running"]
        served.put(pod("web-2", phase="Pending", ready=False))
        added = watcher.expect(lambda line: line.startswith("web-2"), what="the new pod")
        assert added.split()[1:3] == ["0/1", "Pending"]
        # Lined up under the first table's columns.
        assert added.index("0/1") == header.index("READY")
        served.put(pod("web-2", phase="Running", ready=False, waiting="CrashLoopBackOff", restarts=3))
        changed = watcher.expect(lambda line: "CrashLoopBackOff" in line, what="the change")
        assert changed.split()[0] == "web-2" and changed.split()[3] == "3"
        served.delete("Pod", "default", "web-1")
        gone = watcher.expect(lambda line: line.startswith("web-1"), what="the deleted pod's last row")
        assert gone.split()[2] == "Running"
        code, err = watcher.interrupt()
        assert code == 130 and "Traceback" not in err, err
    finally:
        watcher.kill()


def test_watch_documents_with_json_name_and_jsonpath(served: Store, state_dir: Path) -> None:
    watchers = {
        "json": Watcher(state_dir, "pods", "-w", "-o", "json"),
        "name": Watcher(state_dir, "pods", "-w", "-o", "name"),
        "jsonpath": Watcher(state_dir, "pods", "-w", "-o", 'jsonpath={.metadata.name}={.status.phase}{"\\n"}'),
        "watch-only": Watcher(state_dir, "pods", "--watch-only", "--no-headers"),
    }
    try:
        watchers["json"].expect(lambda line: '"name": "web-1"' in line, what="web-1 as JSON")
        watchers["name"].expect(lambda line: line == "pod/web-1", what="pod/web-1")
        watchers["jsonpath"].expect(lambda line: line == "web-1=Running", what="web-1=Running")
        time.sleep(0.5)  # give --watch-only its start; what it must not print is the existing pod
        served.put(pod("web-3", phase="Pending", ready=False))
        watchers["json"].expect(lambda line: '"name": "web-3"' in line, what="web-3 as JSON")
        watchers["name"].expect(lambda line: line == "pod/web-3", what="pod/web-3")
        watchers["jsonpath"].expect(lambda line: line == "web-3=Pending", what="web-3=Pending")
        only = watchers["watch-only"].expect(lambda line: bool(line.strip()), what="the first change")
        assert only.split()[:3] == ["web-3", "0/1", "Pending"], watchers["watch-only"].seen
        for watcher in watchers.values():
            code, err = watcher.interrupt()
            assert code == 130 and "Traceback" not in err, err
        # -o json: one whole object per change, one after another (kubectl's stream of documents).
        text, decoder, names = "\n".join(watchers["json"].seen), json.JSONDecoder(), []
        while text.strip():
            doc, end = decoder.raw_decode(text.strip())
            names.append(doc["metadata"]["name"])
            text = text.strip()[end:]
        assert names == ["web-1", "web-3"]
    finally:
        for watcher in watchers.values():
            watcher.kill()


def test_a_silent_daemon_ends_the_watch_with_exit_3(served: Store, state_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # The server's BOOKMARKs come every 5 s; a client that waits less takes the silence for a dead daemon.
    monkeypatch.setattr(watch_module, "IDLE_TIMEOUT", 1.0)
    capsys.readouterr()
    code = main(["get", "pods", "-w"])
    out, err = capsys.readouterr()
    assert code == 3
    assert out.splitlines()[1].startswith("web-1")
    assert err == f"cannot reach the reconciler daemon at {state_dir / 'api.sock'}: the daemon stopped answering\n"


@pytest.mark.parametrize(("argv", "message"), [
    (["get", "pods,svc", "-w"], "you may only watch one kind"),
    (["get", "pods", "a", "b", "-w"], "you may only watch one kind"),
])
def test_watch_usage_errors(capsys: pytest.CaptureFixture[str], served: Store, argv: list[str], message: str) -> None:
    capsys.readouterr()
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_events_cannot_be_watched_one_sentence(capsys: pytest.CaptureFixture[str], served: Store) -> None:
    capsys.readouterr()
    assert main(["get", "events", "-w"]) == 1
    assert capsys.readouterr().err == "Error from server (BadRequest): events cannot be watched; list them\n"


def cut_off_server(path: Path, *, clean_end: bool) -> threading.Thread:
    """A daemon that answers one watch with the existing pod and a BOOKMARK, then exits:
    the connection is cut mid-stream (as a killed process leaves it), or ended cleanly."""
    import socket as socketlib

    listener = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
            for event in ({"type": "ADDED", "object": pod("web-1")},
                          {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "1"}}}):
                data = (json.dumps(event) + "\n").encode()
                conn.sendall(b"%x\r\n%s\r\n" % (len(data), data))
            if clean_end:
                conn.sendall(b"0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("clean_end", [False, True])
def test_a_daemon_that_goes_away_ends_the_watch_with_exit_3(state_dir: Path, capsys: pytest.CaptureFixture[str],
                                                            clean_end: bool) -> None:
    server = cut_off_server(state_dir / "api.sock", clean_end=clean_end)
    capsys.readouterr()
    code = main(["get", "pods", "-w"])
    out, err = capsys.readouterr()
    server.join(timeout=10)
    assert code == 3
    assert [line.split()[0] for line in out.splitlines()] == ["NAME", "web-1"]
    assert err == (f"cannot reach the reconciler daemon at {state_dir / 'api.sock'}: "
                   "the watch ended (the daemon stopped or restarted)\n")
