"""The podman event stream's reading (runtime/podman/events.py) against a scripted ``call``.

A reopened stream replays from where the last one was (``since``: the engine's time of
its last event, else of its opening from the Date header, less a second), so reopens
leave no gap; after the stream was lost nothing is replayed (the caller relists then).
A lone container of ours comes as an event with no pod name. A local stream whose
events log file can be watched is closed after EVENTS_QUIET seconds of silence and
reopened from ``since`` when the file changes: a close of ours, never reported as lost.
"""
from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
import requests

from runtime.driver import LABEL_MANAGED, EngineEvent, NodeUnreachable, WatchStatus
from runtime.podman import events, eventsfile
from runtime.podman.naming import LABEL_CONTAINER_NAME, LABEL_NAMESPACE, LABEL_POD_NAME

T1 = 1_800_000_123_456_789_000  # an engine time, in ns


def line(*, action: str, time_nano: int, **attributes: str) -> bytes:
    return json.dumps({"Type": "container", "Action": action, "timeNano": time_nano,
                       "Actor": {"ID": "c1", "Attributes": {LABEL_MANAGED: "true", **attributes}}}).encode()


class Stream:
    """A streamed response: its lines, then a read timeout (a silent stretch)."""

    def __init__(self, lines: list[bytes], *, date: float | None = None) -> None:
        self.status_code = 200
        self.text = ""
        self.raw = None
        self.headers = {"Date": format_datetime(datetime.fromtimestamp(date, UTC), usegmt=True)} if date else {}
        self._lines = lines

    def iter_lines(self):
        yield from self._lines
        raise requests.ReadTimeout("read timed out")

    def json(self) -> Any:
        return {}

    def close(self) -> None:
        pass


class Info:
    """``GET /info`` of an engine that logs its events to journald (no file to watch)."""
    status_code = 200
    text = ""

    def json(self) -> Any:
        return {"host": {"eventLogger": "journald"}}


def run_watch(script: list[Any], *, url: str = "unix:///nowhere",
              ) -> tuple[list[dict], list[EngineEvent], list[WatchStatus]]:
    """Watch through ``script`` (a response, or an exception to raise, per call); stop after it."""
    stop = threading.Event()
    asked: list[dict] = []
    seen: list[EngineEvent] = []
    statuses: list[WatchStatus] = []

    def call(method: str, path: str, *, params=None, body=None, timeout=None, stream=False):
        if path == "/info":
            return Info()
        asked.append(dict(params or {}))
        if len(asked) >= len(script):
            stop.set()
        step = script[len(asked) - 1]
        if isinstance(step, Exception):
            raise step
        return step

    events.watch(call, url=url, call_timeout=5, on_event=seen.append, stop=stop,
                 on_status=statuses.append)
    return asked, seen, statuses


def test_a_reopen_replays_from_the_last_event_and_a_lost_stream_from_nothing():
    ours = line(action="died", time_nano=T1, **{LABEL_POD_NAME: "web", LABEL_NAMESPACE: "shop",
                                                 LABEL_CONTAINER_NAME: "app"})
    asked, seen, statuses = run_watch([
        Stream([ours]),
        Stream([b"not json", ours]),
        NodeUnreachable("podman does not answer"),
        Stream([]),
    ])
    assert "since" not in asked[0]  # the first open: the caller relists
    assert asked[1]["since"] == f"{T1 / 1e9:.9f}" == asked[2]["since"]
    assert "since" not in asked[3]  # after the stream was lost: the caller relists
    assert seen[0] == EngineEvent(namespace="shop", name="web", container="app", action="died")
    assert [s.connected for s in statuses] == [True, False, True]


def test_a_silent_stream_is_reopened_from_its_opening_less_a_second():
    opened = 1_800_000_500.0
    asked, _seen, _statuses = run_watch([Stream([], date=opened), Stream([])])
    assert float(asked[1]["since"]) == opened - 1.0


def test_a_lone_container_event_has_no_pod_name_and_create_events_are_asked_for():
    lone = events.engine_event(line(action="start", time_nano=T1, name="by-hand"))
    assert lone == EngineEvent(namespace="", name="", container="by-hand", action="start")
    assert events.engine_event(json.dumps({"Action": "start", "Actor": {"Attributes": {"name": "x"}}})) is None
    assert "create" in json.loads(events._EVENTS_FILTER)["event"]


class SleepingLog:
    """An events log whose ``wait`` returns at once (as if the file changed), recording its calls."""

    def __init__(self, *, watchable: bool = True) -> None:
        self.waits: list[dict[str, Any]] = []
        self.watchable = watchable

    def size(self) -> int:
        return 100 + len(self.waits)

    def wait(self, *, after: int, since: float, stop: threading.Event, timeout: float) -> str:
        self.waits.append({"after": after, "since": since, "timeout": timeout})
        return "logged" if self.watchable else "unwatchable"


def test_a_quiet_stream_is_closed_and_reopened_from_where_it_was_without_a_reported_loss(monkeypatch):
    log = SleepingLog()
    monkeypatch.setattr(eventsfile, "locate", lambda call, *, url, actions: (log, False))
    ours = line(action="died", time_nano=T1, **{LABEL_POD_NAME: "web"})
    broken = requests.ConnectionError("connection reset")  # not silence: reopened at once
    asked, seen, statuses = run_watch([Stream([ours]), Stream([]), BrokenStream(broken), Stream([])])
    # Two quiet closes slept on the file, from the log's end when the stream last spoke; a broken
    # stream did not sleep. Every reopen replays from the last event, and the caller heard
    # "connected" once: it relists on a reconnect only.
    assert [w["since"] for w in log.waits] == [T1 / 1e9, T1 / 1e9]
    assert log.waits[0]["after"] == 100  # marked at the event's line, before any wait
    assert all(w["timeout"] == events.EVENTS_IDLE_LOCAL for w in log.waits)
    assert [a.get("since") for a in asked] == [None] + [f"{T1 / 1e9:.9f}"] * 3
    assert [s.connected for s in statuses] == [True]
    assert seen == [EngineEvent(namespace="default", name="web", container="", action="died")]


def test_a_log_that_cannot_be_watched_keeps_the_stream_open(monkeypatch):
    log = SleepingLog(watchable=False)
    located: list[str] = []

    def locate(call, *, url, actions):
        located.append(url)
        return log, False

    monkeypatch.setattr(eventsfile, "locate", locate)
    asked, _seen, _statuses = run_watch([Stream([], date=1_800_000_500.0), Stream([]), Stream([])])
    assert len(log.waits) == 1 and located == ["unix:///nowhere"]  # given up on, not looked for again
    assert len(asked) == 3


def test_a_remote_stream_never_looks_for_a_file(monkeypatch):
    monkeypatch.setattr(eventsfile, "locate", lambda *a, **k: pytest.fail("a remote engine's file was looked for"))
    asked, _seen, _statuses = run_watch([Stream([]), Stream([])], url="tcp://10.96.0.1:8080")
    assert len(asked) == 2


def test_a_silent_read_is_told_from_a_broken_stream():
    import urllib3

    wrapped = requests.ConnectionError(urllib3.exceptions.ReadTimeoutError(None, "/events", "read timed out"))
    assert events.timed_out(wrapped) and events.timed_out(requests.ReadTimeout("x"))
    assert not events.timed_out(requests.ConnectionError("connection reset"))
    assert not events.timed_out(OSError("shut down"))


class BrokenStream(Stream):
    def __init__(self, error: Exception) -> None:
        super().__init__([])
        self._error = error

    def iter_lines(self):
        raise self._error
