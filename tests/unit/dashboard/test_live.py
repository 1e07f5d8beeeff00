"""The live stream's plumbing: merged mailboxes, bounded clients, ends that free their slot."""
from __future__ import annotations

import threading

import pytest

from reconciler.dashboard.live import Live, Mailbox, TooManyClients, stream


class FakeStore:
    def __init__(self) -> None:
        self.watchers: list = []

    def watch(self, callback) -> None:
        self.watchers.append(callback)

    def unwatch(self, callback) -> None:
        self.watchers.remove(callback)


def test_a_burst_of_writes_is_one_pending_set():
    box = Mailbox()
    for _ in range(10_000):
        box.post(["deployments"])
    box.post(["nodes"])
    assert box.take(timeout=0) == {"deployments", "nodes"}
    assert box.take(timeout=0) == set()


def test_store_writes_reach_subscribers_as_topics_and_clients_are_bounded():
    store = FakeStore()
    live = Live(store=store, fingerprints={}, max_clients=2)
    live.start()
    try:
        a, b = live.subscribe(), live.subscribe()
        with pytest.raises(TooManyClients):
            live.subscribe()
        for callback in store.watchers:
            callback("Pod", "default", "web-1")
            callback("ConfigMap", "default", "x")  # no page shows ConfigMaps
        assert a.take(0) == {"deployments", "nodes"} and b.take(0) == {"deployments", "nodes"}
        live.unsubscribe(a)
        live.subscribe()  # a freed slot can be taken again
    finally:
        live.stop()
    assert store.watchers == []


def test_a_stream_ends_at_its_lifetime_and_frees_its_slot():
    live = Live(store=FakeStore(), fingerprints={}, max_clients=1)
    box = live.subscribe()
    chunks = list(stream(live, box, heartbeat=0.05, lifetime=0.2))
    assert chunks[0].startswith(b"retry:") and b": ping\n\n" in chunks
    assert live.clients == 0


def test_fingerprints_that_move_are_published():
    state = {"value": 1}
    live = Live(store=FakeStore(), fingerprints={"overview": lambda: state["value"]}, poll=0.05)
    live.start()
    try:
        box = live.subscribe()
        got = threading.Event()

        def wait() -> None:
            for _ in range(100):
                if "overview" in box.take(timeout=0.1):
                    got.set()
                    return

        waiter = threading.Thread(target=wait)
        waiter.start()
        threading.Event().wait(0.3)  # the poller's first reading is the baseline
        state["value"] = 2
        waiter.join(timeout=10)
        assert got.is_set()
    finally:
        live.stop()
