"""The engine's event stream (``NodeDriver.watch``): libpod's ``/events``, reopened as needed.

Design:
- podman filters the stream to our labelled containers and the few actions that
  change a pod's state (start, died, oom, remove) or make something to look at
  (create: a pod or container made by hand with our labels); a line becomes an
  EngineEvent if it names one of our pods, or one with no pod name (``name=""``) for
  a lone container of ours, which the caller looks for.
- ``stop`` wakes a blocked read at once: a helper thread (``StreamInterrupter``)
  shuts the socket down. A read timeout (``EVENTS_IDLE``) also bounds every silent
  stretch, after which the stream is simply reopened: that finds a connection that
  died without a word, and bounds the wait where the socket cannot be reached.
- No gap between two streams: a reopen asks podman to replay from where the last
  stream was (``since``: the engine's time of its last event, else of its opening,
  from the HTTP ``Date`` header, less a second for its rounding). Repeats are
  harmless: an event only makes the caller read a pod back. This costs podman one
  read of its event log per reopen, far less than the relist it spares: the caller
  relists rarely while the stream is healthy (Kubernetes' Evented PLEG) and at once
  when it connects again after it was lost (the log may not hold all of an outage).
  The first open replays nothing: the caller relists then.
- A local stream is closed after EVENTS_QUIET seconds of silence when podman's
  events log file is found (runtime/podman/eventsfile.py): an open stream costs
  podman CPU all the time (its file logger polls the log for each stream), a closed
  one nothing. The watcher sleeps on the file (inotify) and reopens the stream from
  ``since`` as soon as something that may be ours is logged, or after
  EVENTS_IDLE_LOCAL at the latest. This close is ours, not a loss: nothing is
  reported, so the caller does not relist; while events flow (a rollout, a commit
  becoming ready) the stream stays open. Where the file cannot be found or watched
  (a remote engine, journald, no permission) the stream stays open as before.
- Failures back off exponentially and are reported once per change of
  connectedness; an engine that cannot stream at all raises EventsUnsupported,
  so the caller falls back to listing alone.
"""
from __future__ import annotations

import json
import socket as socketlib
import threading
import time
from email.utils import parsedate_to_datetime
from typing import Any

import requests
import urllib3

from runtime.driver import (
    LABEL_MANAGED,
    EngineEvent,
    EventHandler,
    EventsUnsupported,
    NodeUnreachable,
    WatchStatus,
    WatchStatusHandler,
)
from runtime.podman import eventsfile
from runtime.podman.naming import LABEL_CONTAINER_NAME, LABEL_NAMESPACE, LABEL_POD_NAME
from runtime.podman.transport import Call, Response, error_message

# The actions after which a pod's state may differ (a kill or stop ends in "died",
# `rm -f` in "died" then "remove"), and "create": a pod or container made by hand with our
# labels that is never started must still be found (init/sync and friends change nothing).
EVENT_ACTIONS = ("create", "start", "died", "oom", "remove")
_EVENTS_FILTER = json.dumps({"type": ["container"], "label": [f"{LABEL_MANAGED}=true"],
                             "event": list(EVENT_ACTIONS)})
# Seconds a silent stream is read before it is reopened: finds a connection that died without
# a word (a remote node gone), and bounds the reaction to stop where the interrupter cannot act.
# Each reopen replays from ``since``, a read of podman's whole event log (~20-40 ms of its CPU
# with a few hundred pods' events), so not too often. On a unix socket the peer cannot vanish
# without a word (its death ends the stream at once), so a local stream is reopened far less
# often. Read at each (re)open, so a test may lower them.
EVENTS_IDLE = 60.0
EVENTS_IDLE_LOCAL = 600.0
# Seconds of silence after which a local stream whose events log is watchable is closed (the
# watcher then sleeps on the file). An open stream costs podman about 1 ms of CPU a second (four
# polls of its log per second), a reopen one read of its event log (13-46 ms with a few hundred
# pods' events): closing after about as much silence as a reopen costs spends at most twice what
# the best choice in hindsight would (the ski-rental rule), and a rollout's events, seconds apart,
# keep the stream open throughout.
EVENTS_QUIET = 20.0
_EVENTS_CONNECT = 10.0  # seconds to open the stream
_EVENTS_BACKOFF_START, _EVENTS_BACKOFF_MAX = 0.5, 10.0
_EVENTS_QUICK_END = 1.0  # a stream that ends this soon without a line counts as a failed open


def engine_event(line: bytes | str) -> EngineEvent | None:
    """One line of podman's event stream as an EngineEvent; None if it is not about one of our
    containers. A lone container's (our label, no pod name) has ``namespace`` and ``name`` ""."""
    raw = _parse(line)
    return _engine_event(raw) if raw is not None else None


def _parse(line: bytes | str) -> dict[str, Any] | None:
    try:
        raw = json.loads(line)
    except ValueError:
        return None
    return raw if isinstance(raw, dict) else None


def _engine_event(raw: dict[str, Any]) -> EngineEvent | None:
    attributes = (raw.get("Actor") or {}).get("Attributes") or {}
    # Labels arrive among the attributes.
    if attributes.get(LABEL_MANAGED) != "true":
        return None
    action = str(raw.get("Action") or raw.get("status") or "")
    if not attributes.get(LABEL_POD_NAME):
        return EngineEvent(namespace="", name="", container=str(attributes.get("name") or ""), action=action)
    return EngineEvent(namespace=str(attributes.get(LABEL_NAMESPACE) or "default"),
                       name=str(attributes[LABEL_POD_NAME]),
                       container=str(attributes.get(LABEL_CONTAINER_NAME) or ""), action=action)


def _event_time(raw: dict[str, Any]) -> float | None:
    """The engine's time of an event (seconds), from ``timeNano`` (else ``time``)."""
    nano, seconds = raw.get("timeNano"), raw.get("time")
    if isinstance(nano, int) and nano > 0:
        return nano / 1e9
    if isinstance(seconds, int) and seconds > 0:
        return float(seconds)
    return None


def _server_time(response: Response) -> float | None:
    """The engine's time when it answered (the HTTP Date header; whole seconds)."""
    headers = getattr(response, "headers", None) or {}
    try:
        return parsedate_to_datetime(headers["Date"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


def watch(call: Call, *, url: str, call_timeout: float, on_event: EventHandler, stop: threading.Event,
          on_status: WatchStatusHandler | None = None) -> None:
    """Deliver our pods' events to ``on_event`` until ``stop`` is set (NodeDriver.watch)."""
    connected: bool | None = None

    def report(status: WatchStatus) -> None:
        nonlocal connected
        if status.connected != connected:
            connected = status.connected
            if on_status is not None:
                on_status(status)

    interrupter = StreamInterrupter(stop=stop)
    try:
        _watch(call, url=url, call_timeout=call_timeout, on_event=on_event, stop=stop, report=report,
               interrupter=interrupter)
    finally:
        interrupter.finish()


def _watch(call: Call, *, url: str, call_timeout: float, on_event: EventHandler, stop: threading.Event,
           report: WatchStatusHandler, interrupter: StreamInterrupter) -> None:
    backoff = _EVENTS_BACKOFF_START
    # The engine's time from which the next open replays (None: the first open, or after the
    # stream was lost, when the caller relists instead).
    resume: float | None = None
    idle = EVENTS_IDLE_LOCAL if url.startswith("unix://") else EVENTS_IDLE
    # podman's events log, once proven to be this engine's (None: the stream stays open).
    events_log: eventsfile.EventsLog | None = None
    locate = url.startswith("unix://")
    while not stop.is_set():
        if events_log is None and locate:
            events_log, locate = eventsfile.locate(call, url=url, actions=EVENT_ACTIONS)
        read_timeout = min(EVENTS_QUIET, idle) if events_log is not None else idle
        params = {"stream": "true", "filters": _EVENTS_FILTER}
        if resume is not None:
            params["since"] = f"{resume:.9f}"
        try:
            response = call("get", "/events", params=params,
                            stream=True, timeout=(min(_EVENTS_CONNECT, call_timeout), read_timeout))
        except NodeUnreachable as exc:
            resume = None
            report(WatchStatus(connected=False, reason=str(exc)))
            stop.wait(backoff)
            backoff = min(backoff * 2, _EVENTS_BACKOFF_MAX)
            continue
        if response.status_code in (404, 405, 501):
            message = error_message(response)
            response.close()
            raise EventsUnsupported(f"podman at {url} cannot stream events: {message}")
        if response.status_code != 200:
            message = error_message(response)
            response.close()
            resume = None
            report(WatchStatus(connected=False, reason=f"podman refused the event stream: {message}"))
            stop.wait(backoff)
            backoff = min(backoff * 2, _EVENTS_BACKOFF_MAX)
            continue
        report(WatchStatus(connected=True))
        opened, lines, quiet = time.monotonic(), 0, False
        # Where the log ended when the stream last spoke: a sleep looks at what came after it.
        mark = events_log.size() if events_log is not None else 0
        served = _server_time(response)
        if served is not None:
            # The Date header is whole seconds, rounded down: a second back covers the rest.
            resume = max(resume or 0.0, served - 1.0)
        interrupter.reading(response)
        try:
            for line in response.iter_lines():
                lines += 1
                if stop.is_set():
                    break
                if events_log is not None:
                    mark = events_log.size()
                raw = _parse(line)
                if raw is None:
                    continue
                at = _event_time(raw)
                if at is not None:
                    resume = max(resume or 0.0, at)
                event = _engine_event(raw)
                if event is not None:
                    on_event(event)
        except (requests.RequestException, OSError) as exc:
            # A read timeout (nothing happened for ``read_timeout`` seconds), a broken stream or
            # the interrupter: reopen it unless stopping; if podman is gone, the reopen says so.
            quiet = timed_out(exc)
        finally:
            interrupter.reading(None)
            response.close()
        if quiet and events_log is not None and resume is not None and not stop.is_set():
            # Closed by us, not lost: still "connected" for the caller, which must not relist.
            if events_log.wait(after=mark, since=resume, stop=stop, timeout=idle) == "unwatchable":
                events_log, locate = None, False  # cannot be watched: keep the stream open
            backoff = _EVENTS_BACKOFF_START
            continue
        if lines == 0 and time.monotonic() - opened < _EVENTS_QUICK_END:
            # A stream that ends as soon as it opens (an engine that logs no events) must
            # not be reopened in a tight loop.
            stop.wait(backoff)
            backoff = min(backoff * 2, _EVENTS_BACKOFF_MAX)
        else:
            backoff = _EVENTS_BACKOFF_START


def timed_out(exc: BaseException) -> bool:
    """Did a read end because the stream was silent (requests wraps urllib3's timeout in a
    ConnectionError), rather than broken?"""
    seen: BaseException | None = exc
    for _ in range(5):
        if isinstance(seen, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
            return True
        if seen is None:
            return False
        cause = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = cause or seen.__cause__ or seen.__context__
    return False


class StreamInterrupter:
    """Ends a blocked read of the current event stream as soon as ``stop`` is set.

    The read timeout alone would hold a stopping watcher for up to EVENTS_IDLE
    seconds. Shutting the socket down wakes the read at once (closing it from
    another thread would not). Where the socket cannot be reached (another
    transport), the read timeout still bounds the wait.
    """

    def __init__(self, *, stop: threading.Event) -> None:
        self._stop = stop
        self._lock = threading.Lock()
        self._response: Response | None = None
        self._finished = False
        self._thread = threading.Thread(target=self._run, name="events-interrupter", daemon=True)
        self._thread.start()

    def reading(self, response: Response | None) -> None:
        """The stream being read now (None between streams)."""
        with self._lock:
            self._response = response
        if response is not None and self._stop.is_set():
            self._interrupt()

    def finish(self) -> None:
        """The watch is over: the helper thread ends within a poll."""
        with self._lock:
            self._finished = True

    def _run(self) -> None:
        while True:
            if self._stop.wait(0.5):
                self._interrupt()
                return
            with self._lock:
                if self._finished:
                    return

    def _interrupt(self) -> None:
        with self._lock:
            response = self._response
        connection: Any = getattr(getattr(response, "raw", None), "connection", None)
        sock = getattr(connection, "sock", None)
        if sock is None:
            return
        try:
            sock.shutdown(socketlib.SHUT_RDWR)
        except OSError:
            pass  # closed already: the read is over anyway
