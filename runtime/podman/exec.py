"""Running a command in a container for an exec probe (``NodeDriver.exec``), within a deadline.

Design:
- libpod's exec session API, attached: the body streams the command's output
  (Docker's multiplexed frames) and ends when it exits. A helper thread reads it
  (``ExecOutput``, keeping the first ``EXEC_OUTPUT_LIMIT`` bytes, as the kubelet
  does, so a chatty command cannot grow memory), and the caller joins that thread
  with its deadline, so the deadline holds whatever the stream does.
- A command that overruns is SIGKILLed with its descendants: podman has no API to
  end an exec session, so the process tree comes from the container's ``top``;
  by host pid when those processes are visible on this host (and lie in the
  container's cgroup), else by a second exec of the image's ``kill``.
- Exec sessions leave a conmon behind for about 5 minutes (podman's exit command
  delay, so the exit code can still be read); there is no API to end one early.
"""
from __future__ import annotations

import os
import signal
import struct
import threading
import time

from runtime.driver import DriverError
from runtime.podman.naming import engine_container_name
from runtime.podman.transport import Call, Response, error_message, read_exact

# The kubelet keeps this much of an exec probe's output; a chatty command cannot grow memory.
EXEC_OUTPUT_LIMIT = 10 * 1024


def exec_command(call: Call, *, call_timeout: float, namespace: str, name: str, container: str,
                 command: tuple[str, ...] | list[str], timeout: float) -> tuple[int, str]:
    """Run ``command`` in the container; (exit code, output), or (-1, why) past ``timeout`` seconds."""
    argv = [str(arg) for arg in command]
    where = f"container {container} of pod {namespace}/{name}"
    if not argv:
        raise DriverError(f"cannot exec in {where}: the command is empty.")
    deadline = time.monotonic() + max(0.0, timeout)
    engine_name = engine_container_name(namespace=namespace, name=name, container=container)
    response = call("post", f"/containers/{engine_name}/exec", body={
        "AttachStdin": False, "AttachStdout": True, "AttachStderr": True, "Tty": False, "Cmd": argv})
    if response.status_code not in (200, 201):
        raise _exec_error(response, where=where)
    exec_id = str(response.json().get("Id", ""))
    # Attached start: the body streams the command's output and ends when it exits. The read
    # timeout only bounds a silent stream; the caller's deadline is kept by joining the reader.
    stream = call("post", f"/exec/{exec_id}/start", body={"Detach": False, "Tty": False},
                  stream=True, timeout=(call_timeout, max(0.0, timeout) + call_timeout))
    if stream.status_code != 200:
        error = _exec_error(stream, where=where)
        stream.close()
        raise error
    output = ExecOutput(limit=EXEC_OUTPUT_LIMIT)
    reader = threading.Thread(target=output.drain, args=(stream,), name=f"exec-{exec_id[:12]}", daemon=True)
    reader.start()
    reader.join(max(0.0, deadline - time.monotonic()))
    exit_code = None if reader.is_alive() else _exit_code(call, exec_id, where=where, deadline=deadline)
    if exit_code is None:
        output.abandon()  # the reader closes the stream once the killed command's output ends
        _kill_exec(call, exec_id)
        return -1, f"timed out after {timeout:g}s"
    return exit_code, output.text()


def _exit_code(call: Call, exec_id: str, *, where: str, deadline: float) -> int | None:
    """The exit code of an exec session whose stream ended; None if it still runs at the deadline.

    podman records the code as the stream ends, so the first look normally has it; the
    session runs on only if the stream broke off early (e.g. a proxy dropped it).
    """
    while True:
        response = call("get", f"/exec/{exec_id}/json")
        if response.status_code != 200:
            raise DriverError(f"podman lost the exec session in {where}: {error_message(response)}")
        body = response.json()
        if not body.get("Running"):
            return int(body.get("ExitCode") or 0)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def _kill_exec(call: Call, exec_id: str) -> None:
    """SIGKILL an exec session's process and its descendants; best effort, never raises.

    The process tree comes from the container's `top` (pids in the container and on
    the host); when those host pids are visible here and lie in the container's
    cgroup, they are killed directly, else a second exec runs the image's `kill`
    (absent in distroless images: then the command runs on until it ends by itself).
    """
    try:
        response = call("get", f"/exec/{exec_id}/json")
        if response.status_code != 200:
            return
        session = response.json()
        host_pid, container_id = int(session.get("Pid") or 0), str(session.get("ContainerID") or "")
        if not session.get("Running") or host_pid <= 0 or not container_id:
            return
        top = call("get", f"/containers/{container_id}/top", params={"ps_args": "pid,ppid,hpid"})
        if top.status_code != 200:
            return
        # Rows are [pid, ppid, hpid] as strings; the exec's own row is found by its host pid.
        rows = [(int(r[0]), int(r[1]), int(r[2])) for r in top.json().get("Processes") or []
                if len(r) == 3 and all(str(v).isdigit() for v in r)]
        tree = descendants(rows, host_pid=host_pid)
        if not tree:
            return
        if _kill_local(host_pids=[hpid for _, hpid in tree], container_id=container_id):
            return
        killer = call("post", f"/containers/{container_id}/exec", body={
            "AttachStdout": False, "AttachStderr": False, "Tty": False,
            "Cmd": ["kill", "-KILL", *(str(pid) for pid, _ in tree)]})
        if killer.status_code in (200, 201):
            call("post", f"/exec/{killer.json().get('Id', '')}/start", body={"Detach": True})
    except (DriverError, ValueError, KeyError, TypeError):
        pass  # the timeout is the answer; a process we could not kill is the engine's to reap


def _exec_error(response: Response, *, where: str) -> DriverError:
    message = error_message(response)
    if response.status_code == 404:
        return DriverError(f"{where} does not exist on the node.")
    if response.status_code == 409 or "state improper" in message or "not running" in message:
        return DriverError(f"{where} is not running, so nothing can be executed in it.")
    return DriverError(f"podman could not exec in {where}: {message}")


class ExecOutput:
    """An exec session's output as the reader thread collects it (the first ``limit`` bytes)."""

    def __init__(self, *, limit: int) -> None:
        self._limit = limit
        self._chunks: list[bytes] = []
        self._size = 0
        self._abandoned = threading.Event()

    def abandon(self) -> None:
        """Nobody waits any more: the reader stops at the next frame (or when the stream ends)."""
        self._abandoned.set()

    def drain(self, response: Response) -> None:
        """Read the multiplexed frames (stdout and stderr alike) until the stream ends; closes it."""
        try:
            raw = response.raw
            while not self._abandoned.is_set():
                header = read_exact(raw, 8)
                if len(header) < 8:
                    break
                (size,) = struct.unpack(">I", header[4:])
                payload = read_exact(raw, size)
                if self._size < self._limit:
                    kept = payload[: self._limit - self._size]
                    self._chunks.append(kept)
                    self._size += len(kept)
                if len(payload) < size:
                    break
        except Exception:  # noqa: BLE001 - a broken or timed-out stream just ends the output
            pass
        finally:
            response.close()

    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", "replace")


def descendants(rows: list[tuple[int, int, int]], *, host_pid: int) -> list[tuple[int, int]]:
    """(container pid, host pid) of the process with ``host_pid`` and all its descendants."""
    by_host = {hpid: pid for pid, _, hpid in rows}
    if host_pid not in by_host:
        return []
    children: dict[int, list[tuple[int, int]]] = {}
    for pid, ppid, hpid in rows:
        children.setdefault(ppid, []).append((pid, hpid))
    tree: list[tuple[int, int]] = []
    todo = [(by_host[host_pid], host_pid)]
    while todo and len(tree) < len(rows):  # bounded even if pids were to form a cycle
        node = todo.pop()
        tree.append(node)
        todo.extend(children.get(node[0], []))
    return tree


def _kill_local(*, host_pids: list[int], container_id: str) -> bool:
    """SIGKILL the pids if this host runs them inside the container; False if they are not visible here.

    The cgroup check makes sure a pid names the container's process on this host,
    not an unrelated one (another host's pid, or a pid reused since).
    """
    killed_any = False
    for pid in host_pids:
        try:
            with open(f"/proc/{pid}/cgroup") as cgroup:
                if container_id not in cgroup.read():
                    continue
            os.kill(pid, signal.SIGKILL)
            killed_any = True
        except (OSError, ValueError):
            continue  # gone already, or not ours to signal
    return killed_any
