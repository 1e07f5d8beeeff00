"""The work queue's contract: dedupe, no concurrent processing of a key, dirty re-adds,
per-key back-off, requeue_after and TemporaryError delays (on a manual clock)."""
from __future__ import annotations

import threading

from reconciler.core.clock import ManualClock
from reconciler.core.workqueue import Result, TemporaryError, WorkQueue


def make(handler, **kw):
    clock = ManualClock()
    return WorkQueue(name="t", handler=handler, workers=0, clock=clock, **kw), clock


def test_adds_of_one_key_are_one_item():
    seen = []
    q, _ = make(lambda k: seen.append(k))
    for _ in range(5):
        q.add("a")
    q.add("b")
    assert q.run_until_idle() == 2 and seen == ["a", "b"]


def test_key_added_while_processing_runs_again_after():
    seen = []
    q, _ = make(lambda k: (seen.append(k), q.add(k) if len(seen) == 1 else None))
    q.add("a")
    q.run_until_idle()
    assert seen == ["a", "a"]


def test_failures_back_off_exponentially_and_success_resets():
    calls = []

    def handler(key):
        calls.append(key)
        if len(calls) <= 3:
            raise RuntimeError("boom")

    q, clock = make(handler, base_delay=1.0)
    q.add("a")
    q.run_until_idle()
    delays = []
    while len(calls) < 4:
        due = q.next_due()
        assert due is not None
        delays.append(round(due - clock.now(), 3))
        clock.advance(due - clock.now())
        q.run_until_idle()
    assert delays == [1.0, 2.0, 4.0]
    assert q.next_due() is None


def test_requeue_after_and_temporary_error():
    outcomes = iter([Result(requeue_after=30), TemporaryError("later", delay=7), None])
    calls = []

    def handler(key):
        calls.append(key)
        out = next(outcomes)
        if isinstance(out, Exception):
            raise out
        return out

    q, clock = make(handler)
    q.add("k")
    q.run_until_idle()
    clock.advance(29)
    assert q.run_until_idle() == 0
    clock.advance(1)
    assert q.run_until_idle() == 1
    clock.advance(7)
    assert q.run_until_idle() == 1 and len(calls) == 3


def test_threaded_workers_never_process_one_key_concurrently():
    active: dict[str, int] = {}
    overlap = []
    lock = threading.Lock()
    count = [0]

    def handler(key):
        with lock:
            active[key] = active.get(key, 0) + 1
            if active[key] > 1:
                overlap.append(key)
        threading.Event().wait(0.001)
        with lock:
            active[key] -= 1
            count[0] += 1

    q = WorkQueue(name="t", handler=handler, workers=4)
    q.start()
    try:
        for i in range(200):
            q.add(f"k{i % 3}")
            if i % 10 == 0:
                threading.Event().wait(0.002)
        import time
        deadline = time.monotonic() + 10
        while not q.idle() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert q.idle()
    finally:
        q.stop()
    assert not overlap and count[0] >= 3
