"""Notifications through a real apprise, to a receiver this test runs on 127.0.0.1 (json://)."""
from __future__ import annotations

import threading

from structlog.testing import capture_logs

from reconciler.core.commitevents import CommitEvent
from reconciler.notify.notifier import Notifications, NotifyUrlError, Target, check_url
from tests.harness.daemon_harness import wait_for
from tests.unit.notify.receiver import receiving

SHA = "0123456789abcdef0123456789abcdef01234567"
ALL = frozenset({"Healthy", "Failed", "RolledBack", "Drift"})
FAST = {"first_backoff": 0.05, "max_backoff": 0.2}


def event(state: str = "Healthy", *, sha: str = SHA, message: str = "") -> CommitEvent:
    return CommitEvent(sha=sha, state=state, subject="Deploy web v2", author="Ann", message=message)  # type: ignore[arg-type]


def idle(notes: Notifications) -> bool:
    return all(not d.outbox.busy and d.outbox.pending() == 0 for d in notes.destinations)


def json_url(receiver, path: str = "/hook") -> str:
    return f"json://127.0.0.1:{receiver.port}{path}"


def test_a_healthy_commit_reaches_a_json_webhook_with_its_sha_subject_and_message():
    with receiving(default=200) as rx:
        notes = Notifications([Target(url=json_url(rx), events=ALL)], **FAST)
        notes.start()
        try:
            notes.commit_changed(event("Healthy", message="Every object of the commit is ready."))
            wait_for(lambda: rx.requests, timeout=10, interval=0.02, what="the notification")
        finally:
            notes.stop()
    request = rx.requests[0]
    assert request.method == "POST" and request.path == "/hook"
    body = request.body
    assert body["commit"] == SHA and body["state"] == "Healthy" and body["subject"] == "Deploy web v2"
    assert body["message"] == "Every object of the commit is ready."
    assert body["type"] == "success"
    assert SHA[:12] in body["title"] and "Deploy web v2" in body["title"]


def test_each_entry_gets_only_the_events_it_asked_for():
    with receiving(default=200) as failures, receiving(default=200) as everything:
        notes = Notifications([Target(url=json_url(failures), events=frozenset({"Failed", "RolledBack"})),
                               Target(url=json_url(everything), events=ALL)], **FAST)
        notes.start()
        try:
            notes.commit_changed(event("Attempted"))  # never a notification
            notes.commit_changed(event("Applied"))  # nor this
            notes.commit_changed(event("Healthy"))
            notes.commit_changed(event("RolledBack", message="web: progress deadline exceeded"))
            notes.commit_changed(event("Drift", message="Drift corrected on the nodes (1 correction)."))
            wait_for(lambda: len(everything.requests) == 3 and len(failures.requests) == 1, timeout=10,
                     interval=0.02, what="three and one notifications")
        finally:
            notes.stop()
    assert [r.body["state"] for r in everything.requests] == ["Healthy", "RolledBack", "Drift"]
    assert [r.body["state"] for r in failures.requests] == ["RolledBack"]
    assert failures.requests[0].body["type"] == "failure"
    assert failures.requests[0].body["message"] == "web: progress deadline exceeded"


def test_operator_payload_extras_are_kept():
    with receiving(default=200) as rx:
        notes = Notifications([Target(url=json_url(rx, "/hook?:team=ops"), events=ALL)], **FAST)
        notes.start()
        try:
            notes.commit_changed(event("Healthy"))
            wait_for(lambda: rx.requests, timeout=10, interval=0.02, what="the notification")
        finally:
            notes.stop()
    assert rx.requests[0].body["team"] == "ops" and rx.requests[0].body["commit"] == SHA


def test_a_failed_send_is_retried_with_back_off_until_it_succeeds():
    with receiving([500, 500], default=200) as rx, capture_logs() as logs:
        notes = Notifications([Target(url=json_url(rx), events=ALL)], **FAST)
        notes.start()
        try:
            notes.commit_changed(event("Failed", message="bad manifest"))
            wait_for(lambda: len(rx.requests) == 3, timeout=10, interval=0.02, what="two failures and a success")
            wait_for(lambda: idle(notes), timeout=5, interval=0.02, what="the outbox idle")  # no fourth attempt
        finally:
            notes.stop()
    assert len(rx.requests) == 3
    assert all(r.body["commit"] == SHA for r in rx.requests)
    retries = [line for line in logs if line["event"] == "notification will be retried"]
    assert [line["attempt"] for line in retries] == [1, 2]
    assert retries[1]["retry_in"] > retries[0]["retry_in"]  # back-off grows
    assert any(line["event"] == "notification sent" for line in logs)


def test_retries_are_capped_and_the_message_given_up_with_a_log_line():
    with receiving(default=500) as rx, capture_logs() as logs:
        notes = Notifications([Target(url=json_url(rx), events=ALL)], max_attempts=3, **FAST)
        notes.start()
        try:
            notes.commit_changed(event("Healthy"))
            wait_for(lambda: any(line["event"] == "notification given up after retries" for line in logs),
                     timeout=10, interval=0.02, what="the give-up log line")
        finally:
            notes.stop()
    assert len(rx.requests) == 3


def test_an_unreachable_target_is_logged_and_never_raises():
    with receiving() as rx:
        dead = json_url(rx)
    # (the receiver is closed: its port now refuses connections)
    with capture_logs() as logs:
        notes = Notifications([Target(url=dead, events=ALL)], max_attempts=2, **FAST)
        notes.start()
        try:
            notes.commit_changed(event("Healthy"))
            wait_for(lambda: any(line["event"] == "notification given up after retries" for line in logs),
                     timeout=15, interval=0.02, what="the give-up log line")
        finally:
            notes.stop()
    assert any(line["event"] == "notification failed" for line in logs)


def test_commit_changed_returns_while_the_worker_is_stuck_on_a_target():
    with receiving(default=200) as rx:
        rx.hold()  # the target accepts the request and never answers (until released)
        notes = Notifications([Target(url=json_url(rx), events=ALL)], **FAST)
        notes.start()
        try:
            notes.commit_changed(event("Healthy", sha="a" * 40))
            assert rx.entered.wait(10)  # the worker is now inside the send, waiting on the target
            caller = threading.Thread(target=lambda: [notes.commit_changed(event("Failed", sha=f"{i:040d}"))
                                                      for i in range(20)])
            caller.start()
            caller.join(timeout=5)
            assert not caller.is_alive(), "commit_changed blocked on a stuck notification target"
            assert notes.destinations[0].outbox.busy  # still stuck: the calls above did not wait for it
        finally:
            rx.release()
            notes.stop()


def test_a_full_queue_drops_the_oldest_message_with_a_log_line():
    with receiving(default=200) as rx, capture_logs() as logs:
        rx.hold()
        notes = Notifications([Target(url=json_url(rx), events=ALL)], capacity=2, **FAST)
        notes.start()
        try:
            notes.commit_changed(event("Healthy", sha="a" * 40))  # in flight, held
            assert rx.entered.wait(10)
            for sha in ("b" * 40, "c" * 40, "d" * 40):  # b is dropped when d arrives
                notes.commit_changed(event("Healthy", sha=sha))
            rx.release()
            wait_for(lambda: len(rx.requests) == 3, timeout=10, interval=0.02, what="three notifications")
            wait_for(lambda: idle(notes), timeout=5, interval=0.02, what="the outbox idle")  # nothing else queued
        finally:
            notes.stop()
    assert [r.body["commit"][0] for r in rx.requests] == ["a", "c", "d"]
    dropped = [line for line in logs if line["event"] == "notification queue full; dropping the oldest message"]
    assert len(dropped) == 1 and dropped[0]["commit"] == "b" * 40


def test_check_url_refuses_what_apprise_cannot_use_and_masks_secrets():
    for bad in ("nope://x", "json://", "not a url"):
        try:
            check_url(bad)
        except NotifyUrlError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
    shown = check_url("json://user:hunter2@127.0.0.1:9000/hook")
    assert "hunter2" not in shown
