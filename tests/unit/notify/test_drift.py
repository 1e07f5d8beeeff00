"""Drift corrections become Drift events: the first at once, later ones summarised, at most one per interval."""
from __future__ import annotations

import threading

from reconciler.core.commitevents import CommitEvent
from reconciler.notify.drift import DriftDigest
from tests.harness.daemon_harness import wait_for

SHA = "1" * 40


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def digest(events: list[CommitEvent], *, interval: float, now=None) -> DriftDigest:
    kwargs = {"now": now} if now is not None else {}
    return DriftDigest(emit=events.append, last_applied=lambda: SHA,
                       interval=interval, **kwargs)


def test_the_first_correction_is_told_at_once_under_the_last_applied_commit():
    events: list[CommitEvent] = []
    d = digest(events, interval=60)
    d.on_drift("container_restarted")
    assert len(events) == 1
    assert events[0].state == "Drift" and events[0].sha == SHA
    assert events[0].message == "Drift corrected on the nodes (1 correction): 1 × container restarted."
    d.stop()


def test_corrections_within_the_interval_are_one_summarised_event_at_its_end():
    events: list[CommitEvent] = []
    d = digest(events, interval=0.5)
    d.on_drift("container_restarted")
    for reason in ("container_restarted", "container_restarted", "stray_pod_removed"):
        d.on_drift(reason)
    assert len(events) == 1  # the rest wait for the interval
    wait_for(lambda: len(events) == 2, timeout=5, interval=0.02, what="the summary")
    assert events[1].message == ("Drift corrected on the nodes (3 corrections): 2 × container restarted, "
                                 "1 × stray pod removed.")
    d.stop()


def test_after_a_quiet_interval_the_next_correction_is_told_at_once_again():
    events: list[CommitEvent] = []
    clock = Clock()
    d = digest(events, interval=60, now=clock)
    d.on_drift("pod_recreated")
    clock.t += 61
    d.on_drift("pod_recreated")
    assert len(events) == 2  # no timer was needed
    d.stop()


def test_stop_cancels_a_pending_summary():
    events: list[CommitEvent] = []
    d = digest(events, interval=30)
    d.on_drift("a")
    d.on_drift("b")
    timer = d._timer
    assert timer is not None
    d.stop()
    timer.join(timeout=5)  # a cancelled Timer's thread ends at once, without calling flush
    assert not timer.is_alive()
    d.flush()  # what a timer that slipped through would do: a stopped digest emits nothing
    assert len(events) == 1


def test_on_drift_never_waits_for_the_emitter():
    """A node agent's thread calls on_drift: with a summary due it only counts."""
    events: list[CommitEvent] = []
    d = digest(events, interval=60)
    d.on_drift("a")
    gate = threading.Event()
    d._emit = lambda e: gate.wait(30)  # an emitter that would hang (it never should, but on_drift must not care)
    caller = threading.Thread(target=lambda: [d.on_drift("b") for _ in range(100)])
    caller.start()
    caller.join(timeout=5)
    alive = caller.is_alive()
    gate.set()
    d.stop()
    assert not alive
