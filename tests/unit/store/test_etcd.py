"""What only the etcd store has to get right, against a real 3-member etcd
(tests/harness/etcd.py): several daemons sharing one etcd see each other's writes
through their watches; a watch survives a member's restart (and a compaction) without
losing or repeating an event; a compare-and-swap conflict runs `mutate` again; etcd
unreachable leaves reads answering and makes writes fail cleanly. The contract both
backends keep is in test_contract.py."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.store.etcd import EtcdStore
from reconciler.store.etcdclient import EtcdClient, EtcdUnavailable
from reconciler.store.protocol import StoreError
from tests.harness.etcd import EtcdCluster
from tests.harness.waiting import wait_for
from tests.unit.store.builders import deployment


@pytest.fixture()
def stores(etcd_cluster: EtcdCluster, etcd_prefix: str) -> Iterator[Callable[..., EtcdStore]]:
    opened: list[EtcdStore] = []

    def open_store(endpoints: list[str] | None = None) -> EtcdStore:
        s = EtcdStore(endpoints or etcd_cluster.endpoints, prefix=etcd_prefix)
        opened.append(s)
        return s

    yield open_store
    for s in opened:
        s.close()


class Recorder:
    """A watch callback that records (kind, namespace, name) in order, thread-safely."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self.seen.append((kind, namespace, name))

    def names(self) -> list[str]:
        with self._lock:
            return [n for _, _, n in self.seen]


def test_two_daemons_see_each_others_writes_through_their_watches(stores: Callable[..., EtcdStore]) -> None:
    a, b = stores(), stores()
    seen_by_b = Recorder()
    b.watch(seen_by_b)

    stored = a.put(deployment("web"))
    wait_for(lambda: b.get("Deployment", "default", "web") == stored, what="b sees a's put")
    assert seen_by_b.seen == [("Deployment", "default", "web")]
    assert b.resource_version == int(stored["metadata"]["resourceVersion"])

    # b's write goes back to a the same way; a CAS from b's cache keeps a's identity.
    b.update("Deployment", "default", "web", lambda cur: {**cur, "spec": {**cur["spec"], "replicas": 7}})
    wait_for(lambda: (a.get("Deployment", "default", "web") or {}).get("spec", {}).get("replicas") == 7)
    assert a.get("Deployment", "default", "web")["metadata"]["uid"] == stored["metadata"]["uid"]
    assert a.get("Deployment", "default", "web")["metadata"]["generation"] == 2

    a.kv_set("k", {"v": 1})
    a.update_sync_state(lastAppliedCommit="abc")
    a.record_revision(namespace="default", deployment="web", revision=1, commit="abc", subject="s", images=["i"],
                      replicaset="rs")
    wait_for(lambda: b.kv_get("k") == {"v": 1} and b.sync_state() == {"lastAppliedCommit": "abc"}
               and len(b.revisions(namespace="default", deployment="web")) == 1, what="b sees kv, sync, history")
    # The sync record is merged, not overwritten, across daemons.
    b.update_sync_state(lastSeenCommit="def")
    wait_for(lambda: a.sync_state() == {"lastAppliedCommit": "abc", "lastSeenCommit": "def"})

    assert a.delete("Deployment", "default", "web")
    wait_for(lambda: b.get("Deployment", "default", "web") is None, what="b sees a's delete")
    wait_for(lambda: len(seen_by_b.seen) == 3)
    assert seen_by_b.names() == ["web", "web", "web"], "put, b's own update, delete: each exactly once"


def test_a_conflict_runs_mutate_again_on_the_current_object(stores: Callable[..., EtcdStore]) -> None:
    a, b = stores(), stores()
    a.put(deployment("web"))
    wait_for(lambda: b.get("Deployment", "default", "web") is not None)
    calls: list[dict] = []

    def add_label(cur: dict) -> dict:
        calls.append(cur)
        if len(calls) == 1:
            # Another daemon writes between b's read and b's compare-and-swap.
            a.update("Deployment", "default", "web", lambda c: {**c, "spec": {**c["spec"], "replicas": 9}})
        cur["metadata"].setdefault("labels", {})["tier"] = "front"
        return cur

    out = b.update("Deployment", "default", "web", add_label)
    assert len(calls) == 2, "the compare-and-swap failed once and mutate ran again"
    assert calls[1]["spec"]["replicas"] == 9, "the second run saw the other daemon's write"
    assert out["spec"]["replicas"] == 9 and out["metadata"]["labels"] == {"tier": "front"}
    wait_for(lambda: a.get("Deployment", "default", "web") == out)


@pytest.mark.parametrize("reach", ["every-member", "member-0-only"])
def test_a_watch_survives_a_member_restart_without_losing_or_repeating(
        etcd_cluster: EtcdCluster, stores: Callable[..., EtcdStore], reach: str) -> None:
    """every-member: the watch moves to another member at once. member-0-only: it waits for
    its member to come back and resumes there from the revision after the last it saw."""
    # The watcher talks to member 0 first (its current endpoint); the writer to member 2.
    watcher = stores(etcd_cluster.endpoints if reach == "every-member" else etcd_cluster.endpoints[:1])
    writer = stores(etcd_cluster.endpoints[2:] + etcd_cluster.endpoints[:2])
    seen = Recorder()
    watcher.watch(seen)
    expected: list[str] = []

    def write(i: int) -> None:
        writer.put({"kind": "ConfigMap", "metadata": {"name": f"c{i}", "namespace": "default"}, "data": {"i": i}})
        expected.append(f"c{i}")

    for i in range(5):
        write(i)
    wait_for(lambda: len(seen.seen) == 5)
    assert watcher.client.current_endpoint == etcd_cluster.endpoints[0]

    etcd_cluster.kill_member(0)
    for i in range(5, 25):  # written while the watcher's member is down
        write(i)
    if reach == "member-0-only":
        wait_for(lambda: not watcher.healthy, what="the watcher notices its member is gone")
        assert len(seen.seen) == 5
    etcd_cluster.start_member(0)
    for i in range(25, 30):
        write(i)
    wait_for(lambda: len(seen.seen) >= 30, what="every write seen after the restart")
    time.sleep(0.3)  # (a repeat would arrive now)
    assert seen.names() == expected, "lost or repeated events across the member restart"
    assert [c["metadata"]["name"] for c in watcher.list("ConfigMap")] == sorted(expected)


def test_compaction_past_the_watch_relists_and_notifies_what_changed(
        tmp_path: Path, etcd_cluster: EtcdCluster, etcd_prefix: str) -> None:
    """A watcher on one member only; while it is down, writes and deletes, then a compaction:
    the watch cannot resume from its revision, relists, and its cache matches etcd."""
    writer = EtcdStore(etcd_cluster.endpoints[1:], prefix=etcd_prefix)
    watcher = EtcdStore(etcd_cluster.endpoints[:1], prefix=etcd_prefix)
    try:
        seen = Recorder()
        watcher.watch(seen)
        for name in ("keep", "change", "drop"):
            writer.put({"kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": {}})
        wait_for(lambda: len(watcher.list("ConfigMap")) == 3)
        del seen.seen[:]

        etcd_cluster.stop_member(0)
        wait_for(lambda: not watcher.healthy, what="the watcher notices its member is gone")
        assert len(watcher.list("ConfigMap")) == 3, "reads keep answering from the cache"
        with pytest.raises(StoreError):
            watcher.put({"kind": "ConfigMap", "metadata": {"name": "x", "namespace": "default"}})
        writer.put({"kind": "ConfigMap", "metadata": {"name": "change", "namespace": "default"}, "data": {"v": "2"}})
        writer.delete("ConfigMap", "default", "drop")
        writer.put({"kind": "ConfigMap", "metadata": {"name": "new", "namespace": "default"}, "data": {}})
        revision = writer.client.range(b"/", count_only=True).revision
        writer.client.compact(revision)
        etcd_cluster.start_member(0)

        wait_for(lambda: sorted(c["metadata"]["name"] for c in watcher.list("ConfigMap")) == ["change", "keep", "new"],
                   what="the relist brought the cache to etcd's state")
        assert watcher.get("ConfigMap", "default", "change")["data"] == {"v": "2"}
        wait_for(lambda: watcher.healthy)
        assert sorted(seen.names()) == ["change", "drop", "new"], "each changed key notified once, not 'keep'"
    finally:
        watcher.close()
        writer.close()


def test_etcd_unreachable_at_start_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(EtcdUnavailable, match="unreachable"):
        EtcdStore(["127.0.0.1:1"], prefix="/x", timeout=1.0)


def test_the_client_fails_over_to_the_next_endpoint(etcd_cluster: EtcdCluster) -> None:
    client = EtcdClient(["127.0.0.1:1", *etcd_cluster.hostports], timeout=2.0)
    try:
        revision = client.put(b"/failover-test", b"v")
        assert revision > 0
        assert client.current_endpoint == etcd_cluster.endpoints[0], "the answering endpoint is kept"
    finally:
        client.delete(b"/failover-test")
        client.close()


def test_the_client_reports_each_calls_latency_for_metrics(etcd_cluster: EtcdCluster) -> None:
    client = EtcdClient(["127.0.0.1:1", *etcd_cluster.hostports], timeout=2.0)
    observed: list[tuple[str, float, bool]] = []
    client.observe = lambda call, seconds, ok: observed.append((call, seconds, ok))
    try:
        client.put(b"/observe-test", b"v")
        client.txn([], [])
    finally:
        client.delete(b"/observe-test")
        client.close()
    assert [(call, ok) for call, _, ok in observed][:2] == [("/kv/put", True), ("/kv/txn", True)]
    assert all(0 < seconds < 5 for _, seconds, _ in observed)
