"""The podman event stream's reading (runtime/podman/events.py) against a scripted ``call``.

A reopened stream replays from where the last one was (``since``: the engine's time of
its last event, else of its opening from the Date header, less a second), so reopens
leave no gap; after the stream was lost nothing is replayed (the caller relists then).
A lone container of ours comes as an event with no pod name.
"""
from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import requests

from runtime.driver import LABEL_MANAGED, EngineEvent, NodeUnreachable, WatchStatus
from runtime.podman import events
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


def run_watch(script: list[Any]) -> tuple[list[dict], list[EngineEvent], list[WatchStatus]]:
    """Watch through ``script`` (a response, or an exception to raise, per call); stop after it."""
    stop = threading.Event()
    asked: list[dict] = []
    seen: list[EngineEvent] = []
    statuses: list[WatchStatus] = []

    def call(method: str, path: str, *, params=None, body=None, timeout=None, stream=False):
        asked.append(dict(params or {}))
        if len(asked) >= len(script):
            stop.set()
        step = script[len(asked) - 1]
        if isinstance(step, Exception):
            raise step
        return step

    events.watch(call, url="unix:///nowhere", call_timeout=5, on_event=seen.append, stop=stop,
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
