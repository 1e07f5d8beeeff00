"""podman's events log file (runtime/podman/eventsfile.py), and the quiet stream against a real podman.

The sleep on the file returns at once when a line that the stream would pass is appended
(our label, an action it asks for, later than the last event delivered), but not for other
lines (an exec probe, another engine's containers); the file is used only once proven to be
the engine's. Against a private podman: the stream closes when quiet, and a container
killed afterwards is still seen at once, woken by the file, with no loss reported.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.driver import LABEL_MANAGED, EngineEvent, WatchStatus
from runtime.podman import events, eventsfile
from runtime.podman.driver import PodmanDriver
from runtime.podman.naming import LABEL_NAMESPACE, LABEL_POD_NAME
from tests.harness.waiting import wait_for

T1 = 1_800_000_123_456_789_012  # an engine time, in ns


def log_line(*, status: str = "died", time_nano: int = T1, kind: str = "container", **labels: str) -> bytes:
    seconds, nanos = divmod(time_nano, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"
    return json.dumps({"ID": "c1", "Name": "x", "Status": status, "Time": stamp, "Type": kind,
                       "Attributes": labels or None}).encode() + b"\n"


OURS = {LABEL_MANAGED: "true", LABEL_POD_NAME: "web"}


class Sleeper:
    """``EventsLog.wait`` in a thread, for what must wake it while it sleeps; ``returned`` is set
    with ``result`` when it returns."""

    def __init__(self, log: eventsfile.EventsLog, *, after: int, since: float, timeout: float = 60) -> None:
        self.stop = threading.Event()
        self.returned = threading.Event()
        self.result: eventsfile.Woken | None = None

        def run() -> None:
            self.result = log.wait(after=after, since=since, stop=self.stop, timeout=timeout)
            self.returned.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "events" / "events.log"
    path.parent.mkdir()
    path.write_bytes(log_line(status="start", **OURS))
    yield path


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


def test_log_times_are_read_to_the_nanosecond() -> None:
    assert eventsfile.log_time("2027-01-15T08:02:03.456789012Z") == 1_800_000_123_456_789_012
    assert eventsfile.log_time("2027-01-15T09:02:03.4567+01:00") == 1_800_000_123_456_700_000
    assert eventsfile.log_time("2027-01-15T08:02:03Z") == 1_800_000_123_000_000_000
    assert eventsfile.log_time("yesterday") is None and eventsfile.log_time(None) is None


def test_only_a_line_the_stream_would_pass_ends_the_sleep(log_file: Path) -> None:
    log = eventsfile.EventsLog(log_file, actions=events.EVENT_ACTIONS)
    mark = log.size()

    def sleep() -> eventsfile.Woken:
        return log.wait(after=mark, since=T1 / 1e9, stop=threading.Event(), timeout=0.3)

    # Not ours, not an action the stream asks for, another kind, or no later than the last
    # event delivered: the sleep lasts until its timeout.
    append(log_file, log_line(status="died", time_nano=T1 + 10_000, app="other"))
    append(log_file, log_line(status="exec", time_nano=T1 + 20_000, **OURS))
    append(log_file, log_line(status="create", time_nano=T1 + 30_000, kind="volume"))
    append(log_file, log_line(status="died", time_nano=T1 + 200, **OURS))  # the last one, as floats go
    append(log_file, b'{"Status": "died", "Ty')  # half a line: read once it is whole
    assert sleep() == "timeout"
    append(log_file, b'pe": "image"}\n')
    assert sleep() == "timeout"
    append(log_file, log_line(status="died", time_nano=T1 + 40_000, **OURS))
    assert sleep() == "logged"
    # While it sleeps, a line of ours wakes it at once.
    mark = log.size()
    sleeper = Sleeper(log, after=mark, since=T1 / 1e9)
    append(log_file, log_line(status="create", time_nano=T1 + 50_000, **OURS))
    assert sleeper.returned.wait(5) and sleeper.result == "logged"


def test_a_line_it_cannot_read_or_a_replaced_file_ends_the_sleep(log_file: Path) -> None:
    log = eventsfile.EventsLog(log_file, actions=events.EVENT_ACTIONS)
    sleeper = Sleeper(log, after=log.size(), since=T1 / 1e9)
    append(log_file, b'{"status": "died"}\n')  # not libpod's file format: ours, to be safe
    assert sleeper.returned.wait(5) and sleeper.result == "logged"

    sleeper = Sleeper(log, after=log.size(), since=T1 / 1e9)
    rotated = log_file.with_name("events.log.tmp")
    rotated.write_bytes(log_line(status="log-rotation", kind="system"))
    rotated.rename(log_file)  # podman rotates by renaming a shorter file over the log
    assert sleeper.returned.wait(5) and sleeper.result == "logged"


def test_a_log_that_goes_away_ends_the_sleep(log_file: Path) -> None:
    log = eventsfile.EventsLog(log_file, actions=events.EVENT_ACTIONS)
    sleeper = Sleeper(log, after=log.size(), since=T1 / 1e9)
    log_file.unlink()  # the engine's tmpdir wiped: the reopened stream says what is left
    assert sleeper.returned.wait(5) and sleeper.result == "logged"


def test_stop_and_the_timeout_end_the_sleep_and_what_cannot_be_watched_says_so(log_file: Path) -> None:
    log = eventsfile.EventsLog(log_file, actions=events.EVENT_ACTIONS)
    sleeper = Sleeper(log, after=log.size(), since=T1 / 1e9)
    sleeper.stop.set()
    assert sleeper.returned.wait(5) and sleeper.result == "stopped"
    assert log.wait(after=log.size(), since=T1 / 1e9, stop=threading.Event(), timeout=0.1) == "timeout"
    gone = eventsfile.EventsLog(log_file.parent / "gone" / "events.log", actions=events.EVENT_ACTIONS)
    assert gone.wait(after=0, since=0.0, stop=threading.Event(), timeout=5) == "unwatchable"
    unreadable = log_file.parent / "not-a-file"
    unreadable.mkdir()
    assert eventsfile.EventsLog(unreadable, actions=events.EVENT_ACTIONS).wait(
        after=0, since=0.0, stop=threading.Event(), timeout=5) == "unwatchable"


def test_a_line_of_ours_logged_before_the_sleep_began_ends_it_at_once(log_file: Path) -> None:
    log = eventsfile.EventsLog(log_file, actions=events.EVENT_ACTIONS)
    mark = log.size()
    append(log_file, log_line(status="died", time_nano=T1 + 10_000, **OURS))
    assert log.wait(after=mark, since=T1 / 1e9, stop=threading.Event(), timeout=60) == "logged"


class Answer:
    def __init__(self, body: Any, *, status_code: int = 200) -> None:
        self.status_code = status_code
        self._body = body
        self.text = body if isinstance(body, str) else json.dumps(body)

    def json(self) -> Any:
        return self._body


def engine(*, logger: str = "file", run_root: str = "/nowhere", reports: list[dict[str, Any]]) -> Callable[..., Any]:
    def call(method: str, path: str, *, params: Any = None, **_: Any) -> Answer:
        if path == "/info":
            return Answer({"host": {"eventLogger": logger}, "store": {"runRoot": run_root}})
        assert path == "/events" and params["stream"] == "false"
        return Answer("\n".join(json.dumps(r) for r in reports))
    return call


def test_a_log_is_used_only_once_the_engine_reports_its_last_event(tmp_path: Path) -> None:
    path = tmp_path / "run" / "libpod-tmp" / "events" / "events.log"
    path.parent.mkdir(parents=True)
    path.write_bytes(log_line(status="start", **OURS) + log_line(status="died", time_nano=T1 + 5, **OURS))
    actions = events.EVENT_ACTIONS
    same = {"Action": "died", "timeNano": T1 + 5}
    located, again = eventsfile.locate(engine(run_root=str(tmp_path / "run"), reports=[same]),
                                       url="unix:///x.sock", actions=actions)
    assert located is not None and located.path == path and not again
    # Another engine's file (its last event is not this engine's), a journald logger, a remote engine.
    other = {"Action": "died", "timeNano": T1 + 6}
    assert eventsfile.locate(engine(run_root=str(tmp_path / "run"), reports=[other]), url="unix:///x.sock",
                             actions=actions)[0] is None
    assert eventsfile.locate(engine(logger="journald", reports=[]), url="unix:///x.sock",
                             actions=actions) == (None, False)
    assert eventsfile.locate(engine(reports=[]), url="tcp://10.96.0.1:8080", actions=actions) == (None, False)


# --------------------------------------------------------------------------- a real podman


@pytest.mark.podman
def test_a_quiet_stream_closes_and_a_container_killed_later_is_seen_at_once(podman_node, images,
                                                                             monkeypatch) -> None:
    monkeypatch.setattr(events, "EVENTS_QUIET", 1.0)
    driver = PodmanDriver(url=podman_node.url)
    driver.pull(images.hello_v1)
    name = "quiet-stream-kill"
    podman_node.cli("rm", "--force", "--time", "0", name)
    sleeps: list[float] = []
    original = eventsfile.EventsLog.wait

    def spied(self: eventsfile.EventsLog, **kwargs: Any) -> eventsfile.Woken:
        sleeps.append(time.monotonic())
        try:
            return original(self, **kwargs)
        finally:
            sleeps.append(time.monotonic())

    monkeypatch.setattr(eventsfile.EventsLog, "wait", spied)
    seen: list[EngineEvent] = []
    statuses: list[WatchStatus] = []
    stop = threading.Event()
    watcher = threading.Thread(target=driver.watch, kwargs={"on_event": seen.append, "stop": stop,
                                                            "on_status": statuses.append}, daemon=True)
    watcher.start()
    try:
        wait_for(lambda: statuses, timeout=30, what="the stream to open")
        podman_node.cli("run", "-d", "--name", name, "--network", "none", "--label", f"{LABEL_MANAGED}=true",
                        "--label", f"{LABEL_POD_NAME}=quiet", "--label", f"{LABEL_NAMESPACE}=drv",
                        images.hello_v1, "sleep", "600", check=True)
        wait_for(lambda: any(e.name == "quiet" and e.action == "start" for e in seen), timeout=30,
                 what="the container's start event")
        # Asleep on the file (an odd number of marks: entered, not left), the stream closed.
        wait_for(lambda: len(sleeps) % 2 == 1, timeout=30, what="the quiet stream to close")
        killed = time.monotonic()
        podman_node.cli("kill", name, check=True)
        wait_for(lambda: any(e.name == "quiet" and e.action == "died" for e in seen), timeout=10,
                 what="the kill to be seen")
        # Woken by the file, not by the safety timeout (EVENTS_IDLE_LOCAL), with no loss reported.
        woke = min(t for t in sleeps[1::2] if t >= killed)
        assert woke - killed < 5
        assert [s.connected for s in statuses] == [True]
    finally:
        stop.set()
        watcher.join(timeout=10)
        podman_node.cli("rm", "--force", "--time", "0", name)
        driver.close()
