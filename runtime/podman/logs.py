"""A container's log as lines (``NodeDriver.logs``), optionally followed.

Design: podman answers ``/containers/{name}/logs`` with Docker's multiplexed
frames (an 8-byte header: stream id, three zero bytes, payload size), or with
plain bytes for a tty container. Lines are split per stream (a frame may end in
the middle of a line, and stdout and stderr interleave), decoded leniently, and
yielded as they come, so ``follow`` works as a generator the caller stops by
closing it. A stream that breaks off mid-way raises NodeUnreachable.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator

import requests

from runtime.driver import DriverError, NodeUnreachable
from runtime.podman.naming import engine_container_name
from runtime.podman.transport import Call, Response, error_message, read_exact


def open_logs(call: Call, *, call_timeout: float, namespace: str, name: str, container: str,
              follow: bool = False) -> Iterator[str]:
    """The container's log lines; with ``follow``, on and on as the container writes them."""
    engine_name = engine_container_name(namespace=namespace, name=name, container=container)
    params = {"stdout": "true", "stderr": "true", "follow": "true" if follow else "false"}
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
