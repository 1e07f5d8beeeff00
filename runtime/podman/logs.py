"""A container's log as lines (``NodeDriver.logs``), optionally followed.

Design: podman answers ``/containers/{name}/logs`` with Docker's multiplexed
frames (an 8-byte header: stream id, three zero bytes, payload size), or with
plain bytes for a tty container. Lines are split per stream (a frame may end in
the middle of a line, and stdout and stderr interleave), decoded leniently, and
yielded as they come, so ``follow`` works as a generator the caller stops by
closing it. A stream that breaks off mid-way raises NodeUnreachable.

``since`` (unix seconds) is podman's own filter, so old lines never cross the wire.

The previous container (``logs -p``): a restart is a new container (see
``PodmanDriver.recreate_container``), and the old one is removed so that nothing it
wrote outlives it. Its log goes with it, so ``PreviousLogs`` reads it just before the
removal and keeps it, in memory, until the next restart of that container replaces it
or the pod goes. Why not keep the old container instead (renamed, until the next
restart): it would carry the pod's labels, so every listing of the pod would have to
learn to skip it, and podman would keep its writable layer too. Why memory and not a
file: the driver may talk to a podman on another host and has no state dir of its own.
What that costs: after the daemon or node agent restarts, ``-p`` has nothing until the
next restart, and each kept log is capped (``PREVIOUS_LOG_LIMIT``, its newest bytes),
as the kubelet caps a container's log file.
"""
from __future__ import annotations

import re
import struct
import threading
from collections import deque
from collections.abc import Iterator
from datetime import datetime

import requests

from runtime.driver import DriverError, NodeUnreachable
from runtime.podman.naming import engine_container_name
from runtime.podman.transport import Call, Response, error_message, read_exact

PREVIOUS_LOG_LIMIT = 2 * 2**20  # bytes of a previous container's log kept (its newest ones)
# podman's `timestamps=true` prefix: RFC 3339 with up to nanoseconds, then one space.
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d) ")


def open_logs(call: Call, *, call_timeout: float, namespace: str, name: str, container: str,
              follow: bool = False, since: float | None = None, timestamps: bool = False) -> Iterator[str]:
    """The container's log lines; with ``follow``, on and on as the container writes them.

    ``since``: only lines written at or after this unix time; ``timestamps``: each line
    starts with podman's RFC 3339 time stamp and a space."""
    engine_name = engine_container_name(namespace=namespace, name=name, container=container)
    params = {"stdout": "true", "stderr": "true", "follow": "true" if follow else "false"}
    if since is not None:
        params["since"] = str(int(since))
    if timestamps:
        params["timestamps"] = "true"
    response = call("get", f"/containers/{engine_name}/logs", params=params,
                    timeout=None if follow else call_timeout, stream=True)
    if response.status_code == 404:
        response.close()
        raise DriverError(f"container {container} of pod {namespace}/{name} does not exist on the node.")
    if response.status_code != 200:
        message = error_message(response)
        response.close()
        raise DriverError(f"podman could not read logs of {container} in pod {namespace}/{name}: {message}")
    return log_lines(response)


def log_lines(response: Response) -> Iterator[str]:
    """Lines from a logs response: Docker's multiplexed frames (8-byte header) or a raw stream."""
    buffers: dict[int, bytes] = {}
    try:
        raw = response.raw
        while True:
            header = read_exact(raw, 8)
            if not header:
                break
            if len(header) == 8 and header[0] in (0, 1, 2) and header[1:4] == b"\0\0\0":
                (size,) = struct.unpack(">I", header[4:])
                stream_id, payload = header[0], read_exact(raw, size)
            else:  # not multiplexed (a tty container): plain bytes
                stream_id, payload = 1, header + (raw.read(4096) or b"")
            data = buffers.get(stream_id, b"") + payload
            *lines, rest = data.split(b"\n")
            buffers[stream_id] = rest
            for line in lines:
                yield line.decode("utf-8", "replace")
        for rest in buffers.values():
            if rest:
                yield rest.decode("utf-8", "replace")
    except (requests.RequestException, OSError) as exc:
        raise NodeUnreachable(f"the log stream broke off: {exc}") from None
    finally:
        response.close()


def _stamped(line: str) -> tuple[float | None, str]:
    """(unix time, text) of a `timestamps=true` line; (None, line) when it has no stamp."""
    match = _STAMP.match(line)
    if match is None:
        return None, line
    fraction = (match.group(2) or "")[:7]  # datetime takes microseconds, podman gives nanoseconds
    try:
        when = datetime.fromisoformat(match.group(1) + fraction + match.group(3).replace("Z", "+00:00"))
    except ValueError:
        return None, line
    return when.timestamp(), line[match.end():]


class PreviousLogs:
    """The log of each container's previous instance, kept from just before it was removed."""

    def __init__(self, *, limit: int = PREVIOUS_LOG_LIMIT) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._kept: dict[tuple[str, str, str], list[tuple[float | None, str]]] = {}

    def keep(self, call: Call, *, call_timeout: float, namespace: str, name: str, container: str) -> None:
        """Read the container's whole log now (it is about to be removed) and keep its newest part.

        A container already gone (removed behind our back) leaves nothing to keep: the
        instance before it is then not "the previous one" either, so it is forgotten."""
        key = (namespace, name, container)
        lines: deque[tuple[float | None, str]] = deque()
        size = 0
        try:
            for line in open_logs(call, call_timeout=call_timeout, namespace=namespace, name=name,
                                  container=container, timestamps=True):
                when, text = _stamped(line)
                lines.append((when, text))
                size += len(text) + 1
                while size > self._limit and lines:
                    size -= len(lines.popleft()[1]) + 1
        except (DriverError, NodeUnreachable):
            with self._lock:
                self._kept.pop(key, None)
            return
        with self._lock:
            self._kept[key] = list(lines)

    def lines(self, *, namespace: str, name: str, container: str, since: float | None = None) -> Iterator[str]:
        """The kept log (lines at or after ``since``); DriverError when there is none, in kubectl's words."""
        with self._lock:
            kept = self._kept.get((namespace, name, container))
        if kept is None:
            raise DriverError(f'previous terminated container "{container}" in pod "{name}" not found')
        return iter([text for when, text in kept if since is None or when is None or when >= since])

    def forget_pod(self, *, namespace: str, name: str) -> None:
        with self._lock:
            for key in [k for k in self._kept if k[:2] == (namespace, name)]:
                del self._kept[key]
