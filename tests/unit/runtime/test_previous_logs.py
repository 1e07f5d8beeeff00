"""`logs -p` at the driver: the previous instance's log is read (with time stamps) just before
the container is removed, kept to its newest bytes, filtered by --since, and forgotten with
the pod; no previous instance is kubectl's sentence. A fake podman answer, no engine."""
from __future__ import annotations

import io
import struct
from typing import Any

import pytest

from runtime.driver import DriverError
from runtime.podman.logs import PreviousLogs, open_logs


class Answer:
    def __init__(self, status: int, body: bytes) -> None:
        self.status_code = status
        self.raw = io.BytesIO(body)
        self.text = body.decode(errors="replace")

    def json(self) -> Any:
        return {"message": self.text}

    def close(self) -> None:
        pass


def frames(*lines: str) -> bytes:
    """Docker's multiplexed stdout frames, one per line."""
    out = b""
    for line in lines:
        data = (line + "\n").encode()
        out += bytes([1, 0, 0, 0]) + struct.pack(">I", len(data)) + data
    return out


class Podman:
    def __init__(self, lines: list[str], status: int = 200) -> None:
        self.lines, self.status = lines, status
        self.params: list[dict[str, str]] = []

    def __call__(self, method: str, path: str, **kwargs: Any) -> Answer:
        self.params.append(dict(kwargs.get("params") or {}))
        return Answer(self.status, frames(*self.lines) if self.status == 200 else b"no such container")


STAMPED = ["2026-12-06T09:00:00.123456789Z first", "2026-12-06T09:00:05+00:00 second",
           "2026-12-06T09:00:10.5Z third"]


def test_kept_with_time_stamps_and_filtered_by_since() -> None:
    podman, kept = Podman(STAMPED), PreviousLogs()
    kept.keep(podman, call_timeout=5, namespace="ns", name="p", container="app")
    assert podman.params[-1]["timestamps"] == "true" and podman.params[-1]["follow"] == "false"
    assert list(kept.lines(namespace="ns", name="p", container="app")) == ["first", "second", "third"]
    since = 1796547605.0  # 2026-12-06T09:00:05Z
    assert list(kept.lines(namespace="ns", name="p", container="app", since=since)) == ["second", "third"]


def test_only_the_newest_bytes_are_kept() -> None:
    kept = PreviousLogs(limit=20)
    kept.keep(Podman([f"2026-12-06T09:00:0{i}Z line-{i}" for i in range(6)]), call_timeout=5,
              namespace="ns", name="p", container="app")
    assert list(kept.lines(namespace="ns", name="p", container="app")) == ["line-4", "line-5"]


def test_none_gone_and_forgotten_are_kubectls_sentence() -> None:
    kept = PreviousLogs()
    with pytest.raises(DriverError, match='previous terminated container "app" in pod "p" not found'):
        kept.lines(namespace="ns", name="p", container="app")
    kept.keep(Podman(STAMPED), call_timeout=5, namespace="ns", name="p", container="app")
    # The next restart finds its container already removed (rm -f behind our back): the older log is not
    # the previous instance's any more.
    kept.keep(Podman([], status=404), call_timeout=5, namespace="ns", name="p", container="app")
    with pytest.raises(DriverError):
        kept.lines(namespace="ns", name="p", container="app")
    kept.keep(Podman(STAMPED), call_timeout=5, namespace="ns", name="p", container="app")
    kept.forget_pod(namespace="ns", name="p")
    with pytest.raises(DriverError):
        kept.lines(namespace="ns", name="p", container="app")


def test_since_is_podmans_own_filter() -> None:
    podman = Podman(["x"])
    assert list(open_logs(podman, call_timeout=5, namespace="ns", name="p", container="app", since=1796547605.7)) == ["x"]
    assert podman.params[-1]["since"] == "1796547605"
