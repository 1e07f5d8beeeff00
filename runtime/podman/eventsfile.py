"""podman's events log file: where it is, and waiting until it may hold an event of ours.

Why: an open ``/events?stream=true`` costs podman 4.3 CPU all the time, as its file
event logger tails the file by polling it four times a second for each open stream
(measured over 60 s: podman alone 0.150 %, with one open stream 0.250 %). While the
engine is quiet the watcher closes the stream (runtime/podman/events.py) and waits
here instead, woken by inotify the moment podman appends to its log; the reopened
stream replays from where it was, so nothing is lost and nothing is relisted.

Design:
- ``locate`` finds the file only where that is safe: a ``unix://`` engine whose
  ``GET /info`` says it logs events to a file. podman 4.3 does not name the file in
  ``/info``, so candidates come from what is known: our private services' layout
  (``--tmpdir <runRoot>/libpod-tmp``, runtime/podman/service.py), containers.conf
  (``events_logfile_path``, ``tmp_dir``), podman's default tmpdir. A candidate is used
  only once proven to be this engine's: the event on its last line must be one the
  engine itself reports, at the same nanosecond. A wrong guess (another engine's
  file on the same host) would otherwise sleep through drift.
- ``EventsLog.wait`` reads what was appended since the stream's last line and returns
  as soon as a line might be an event the stream would have passed (our label, one of
  the actions it asks for, later than the last event delivered), or the file was
  replaced or shrank; else it sleeps on inotify again. So exec probes and other
  engines' containers sharing the log wake it only briefly. A line it cannot read
  counts as ours: a reopen too many is cheap, a missed event is not.
- inotify through ctypes rather than watchdog: watchdog's public API runs an observer
  and an emitter thread and queues every event in the directory (our own reads of the
  file among them), and its low-level inotify classes are internal (rewritten between
  major versions); a wait with a timeout on one descriptor is a few system calls.
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import select
import struct
import threading
import time
import tomllib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from runtime.driver import LABEL_MANAGED, DriverError
from runtime.podman.service import LIBPOD_TMPDIR
from runtime.podman.transport import Call

EVENTS_LOG = Path("events") / "events.log"  # under libpod's tmpdir
ROOT_TMPDIR = Path("/run/libpod")  # podman's default tmp_dir for root
CONTAINERS_CONF_FILES = (Path("/usr/share/containers/containers.conf"), Path("/etc/containers/containers.conf"))
CONTAINERS_CONF_DIRS = (Path("/etc/containers/containers.conf.d"),)
_PEEK_MAX = 4 << 20  # bytes read per look at the log; more than this appended counts as "maybe ours"
# A line this close to the last event delivered is that event: ``since`` comes as float seconds,
# exact only to a few hundred ns, and podman logs no two events a microsecond apart.
_SAME_TIME_NS = 1_000
_STOP_POLL = 0.5  # seconds between looks at ``stop`` while asleep (as the stream's interrupter)

# inotify(7)
_IN_MODIFY, _IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x2, 0x40, 0x80, 0x100, 0x200
_IN_DELETE_SELF, _IN_MOVE_SELF, _IN_Q_OVERFLOW, _IN_IGNORED = 0x400, 0x800, 0x4000, 0x8000
# Written to, or replaced, moved away or removed (a rotation renames a new file over it).
_WATCH_MASK = (_IN_MODIFY | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE | _IN_DELETE_SELF
               | _IN_MOVE_SELF)
_ALARM = _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_Q_OVERFLOW | _IN_IGNORED  # look whatever the name
# Why ``EventsLog.wait`` returned: something that may be ours was logged, stop, the timeout, or
# the log cannot be watched.
Woken = Literal["logged", "stopped", "timeout", "unwatchable"]
_EVENT_HEAD = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


class Inotify:
    """One inotify descriptor watching one directory (ctypes; see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        if libc.inotify_add_watch(fd, os.fsencode(directory), _WATCH_MASK) < 0:
            error = ctypes.get_errno()
            os.close(fd)
            raise OSError(error, f"cannot watch {directory}")
        self.fd = fd
        self._poller = select.poll()
        self._poller.register(fd, select.POLLIN)

    def read(self, timeout: float) -> list[tuple[int, str]]:
        """The events (mask, name) that arrive within ``timeout`` seconds (empty: none)."""
        if not self._poller.poll(max(int(timeout * 1000), 0)):
            return []
        try:
            data = os.read(self.fd, 64 * 1024)
        except BlockingIOError:
            return []
        found, at = [], 0
        while at + _EVENT_HEAD.size <= len(data):
            _wd, mask, _cookie, size = _EVENT_HEAD.unpack_from(data, at)
            name = data[at + _EVENT_HEAD.size:at + _EVENT_HEAD.size + size].rstrip(b"\0")
            found.append((mask, os.fsdecode(name)))
            at += _EVENT_HEAD.size + size
        return found

    def close(self) -> None:
        os.close(self.fd)


class EventsLog:
    """podman's events log file, proven to be the engine's (``locate``)."""

    def __init__(self, path: Path, *, actions: Collection[str]) -> None:
        self.path = path
        self._actions = frozenset(actions)

    def size(self) -> int:
        """Where the log ends now (0 if it is missing): mark it when the stream delivers a line."""
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def wait(self, *, after: int, since: float, stop: threading.Event, timeout: float) -> Woken:
        """Sleep until the log may hold an event of ours appended after byte ``after`` and later
        than ``since`` (engine seconds), ``stop`` is set or ``timeout`` seconds pass; or say at
        once that the log cannot be watched (the caller keeps its stream open from then on)."""
        try:
            inotify = Inotify(self.path.parent)
        except OSError:
            return "unwatchable"
        try:
            # Watched first, then looked at: a line appended in between is seen either way.
            looked = self._look(_Position(inode=self._inode(), offset=after), since)
            deadline = time.monotonic() + timeout
            while looked is not None and not looked[1] and not stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                seen = inotify.read(min(remaining, _STOP_POLL))
                if any(mask & _ALARM or name == self.path.name for mask, name in seen):
                    looked = self._look(looked[0], since)
            if looked is None:
                return "unwatchable"  # unreadable (its permissions changed?): no use sleeping on it again
            return "logged" if looked[1] else "stopped" if stop.is_set() else "timeout"
        finally:
            inotify.close()

    def _inode(self) -> int | None:
        try:
            return self.path.stat().st_ino
        except OSError:
            return None

    def _look(self, position: _Position, since: float) -> tuple[_Position, bool] | None:
        """Read the lines appended after ``position``: (where the complete ones end, might one be
        ours); None if the log cannot be read."""
        try:
            with open(self.path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                if position.inode is not None and stat.st_ino != position.inode:
                    return _Position(inode=stat.st_ino, offset=stat.st_size), True  # replaced (rotated)
                if stat.st_size < position.offset or stat.st_size - position.offset > _PEEK_MAX:
                    # Truncated, or too much to read: let the reopened stream say.
                    return _Position(inode=stat.st_ino, offset=stat.st_size), True
                handle.seek(position.offset)
                appended = handle.read(stat.st_size - position.offset)
        except FileNotFoundError:
            # Gone (the engine's tmpdir removed?): let the reopened stream say. Missing from the
            # start (an engine that has logged nothing yet): its creation wakes us, all of it new.
            return _Position(inode=None, offset=0), position.inode is not None or position.offset > 0
        except OSError:
            return None
        complete = appended.rfind(b"\n") + 1
        ours = any(self._maybe_ours(line, since) for line in appended[:complete].splitlines() if line.strip())
        return _Position(inode=stat.st_ino, offset=position.offset + complete), ours

    def _maybe_ours(self, line: bytes, since: float) -> bool:
        """Might the stream pass this line (podman's file format: libpod's events.Event)? Read
        conservatively: a line that is not as expected counts as ours."""
        try:
            raw = json.loads(line)
        except ValueError:
            return True
        if not isinstance(raw, dict):
            return True
        kind, status = raw.get("Type"), raw.get("Status")
        if not isinstance(kind, str) or not isinstance(status, str):
            return True
        if kind != "container" or status not in self._actions:
            return False
        attributes = raw.get("Attributes") or {}  # the container's labels are among them
        if not isinstance(attributes, dict):
            return True
        if attributes.get(LABEL_MANAGED) != "true":
            return False
        at = log_time(raw.get("Time"))
        return at is None or at > since * 1e9 + _SAME_TIME_NS  # else delivered already


@dataclass(frozen=True, kw_only=True)
class _Position:
    """How far the log has been read: the file (inode; None: missing) and the byte offset."""
    inode: int | None
    offset: int


def log_time(value: Any) -> int | None:
    """The engine's time (ns) of a log line's ``Time`` (Go's RFC 3339 with nanoseconds)."""
    match = _TIME.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    base, fraction, zone = match.groups()
    try:
        seconds = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone)).timestamp()
    except ValueError:
        return None
    return int(seconds) * 1_000_000_000 + int((fraction or "").ljust(9, "0"))


def locate(call: Call, *, url: str, actions: Collection[str]) -> tuple[EventsLog | None, bool]:
    """This engine's events log, proven (see the module docstring); and whether it is worth
    asking again later (no candidate holds an event yet, or the engine did not answer)."""
    if not url.startswith("unix://"):
        return None, False  # a remote engine's files are not ours to watch
    try:
        response = call("get", "/info")
        info = response.json() if response.status_code == 200 else None
    except (DriverError, ValueError):
        return None, True
    if not isinstance(info, dict):
        return None, False
    if (info.get("host") or {}).get("eventLogger") != "file":
        return None, False  # journald (or none): no file to watch; the stream stays open
    for path in candidates(info):
        last = _last_line(path)
        if last is None:
            continue  # not there yet (an engine that has logged nothing), or not readable
        proven = _engine_reports(call, last)
        if proven is None:
            break
        if proven:
            return EventsLog(path, actions=actions), False
    # Asked again at the next reopen (rare: after EVENTS_IDLE_LOCAL of silence, or a reconnect).
    return None, True


def candidates(info: dict[str, Any]) -> list[Path]:
    """Where the engine's events log may be, most specific first (see the module docstring)."""
    found: list[Path] = []
    run_root = (info.get("store") or {}).get("runRoot")
    if isinstance(run_root, str) and run_root:
        found.append(Path(run_root) / LIBPOD_TMPDIR / EVENTS_LOG)
    engine = _containers_conf().get("engine") or {}
    if isinstance(engine.get("events_logfile_path"), str) and engine["events_logfile_path"]:
        found.append(Path(engine["events_logfile_path"]))
    tmp_dir = engine.get("tmp_dir")
    if isinstance(tmp_dir, str) and tmp_dir:
        found.append(Path(tmp_dir) / EVENTS_LOG)
    elif os.geteuid() == 0:
        found.append(ROOT_TMPDIR / EVENTS_LOG)
    else:
        runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
        found.append(Path(runtime_dir) / "libpod" / "tmp" / EVENTS_LOG)
    return list(dict.fromkeys(found))


def _containers_conf() -> dict[str, Any]:
    """containers.conf as podman merges it (``$CONTAINERS_CONF`` alone when set), best effort:
    a wrong guess is caught by ``locate``'s proof."""
    override = os.environ.get("CONTAINERS_CONF")
    files = [Path(override)] if override else [f for f in CONTAINERS_CONF_FILES if f.is_file()]
    if not override:
        for directory in CONTAINERS_CONF_DIRS:
            if directory.is_dir():
                files += sorted(f for f in directory.iterdir() if f.suffix == ".conf" and f.is_file())
    merged: dict[str, Any] = {}
    for file in files:
        try:
            with open(file, "rb") as handle:
                engine = tomllib.load(handle).get("engine")
        except (OSError, tomllib.TOMLDecodeError):
            continue
        if isinstance(engine, dict):
            merged.setdefault("engine", {}).update(engine)
    return merged


def _last_line(path: Path) -> dict[str, Any] | None:
    """The last complete event in the log (None: missing, unreadable, empty or not an event)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(size - 64 * 1024, 0))
            tail = handle.read()
    except OSError:
        return None  # missing, not ours to read, not a file
    lines = tail[:tail.rfind(b"\n") + 1].splitlines()
    try:
        raw = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return raw if isinstance(raw, dict) and log_time(raw.get("Time")) is not None else None


def _engine_reports(call: Call, line: dict[str, Any]) -> bool | None:
    """Does the engine report this log line's event, at the same nanosecond (None: no answer)?"""
    at = log_time(line.get("Time"))
    assert at is not None
    # podman 4.3 answers nothing to ``until`` in the past, so only ``since``: the log's tail.
    try:
        response = call("get", "/events", params={"stream": "false", "since": f"{at / 1e9 - 1:.9f}"})
        if response.status_code != 200:
            return None
        body = response.text
    except DriverError:
        return None
    for text in body.splitlines():
        try:
            event = json.loads(text)
        except ValueError:
            continue
        if (isinstance(event, dict) and event.get("timeNano") == at
                and (event.get("Action") or event.get("status")) == line.get("Status")):
            return True
    return False
