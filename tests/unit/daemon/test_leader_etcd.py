"""Leader election against a real 3-member etcd (tests/harness/etcd.py): the contract's failover times.

- three daemons' electors: exactly one leads, all three are members, all agree on the leader;
- the leader dies without a word (its process gone: no revoke): another leads within
  leaseDuration + 5 s;
- a leader that cannot renew (the whole etcd stopped) steps down before its lease could expire;
  when etcd is back, one daemon leads again;
- the old leader started again comes back as a standby.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from reconciler.daemon.leader import EtcdElector, Identity
from reconciler.daemon.leaderetcd import EtcdLeaseKV
from reconciler.store.etcdclient import EtcdClient
from tests.harness.etcd import EtcdCluster, etcd_cluster, etcd_prefix, private_etcd_cluster  # noqa: F401
from tests.harness.waiting import wait_for

LEASE = 3.0


class Recorder:
    def __init__(self) -> None:
        self.changes: list[tuple[bool, float]] = []
        self.lock = threading.Lock()

    def __call__(self, leading: bool) -> None:
        with self.lock:
            self.changes.append((leading, time.monotonic()))


def new_elector(cluster: EtcdCluster, prefix: str, name: str) -> tuple[EtcdElector, Recorder]:
    client = EtcdClient(cluster.endpoints, timeout=max(0.5, LEASE / 12))
    elector = EtcdElector(kv=EtcdLeaseKV(client, prefix=prefix), identity=Identity(name=name), lease_duration=LEASE)
    seen = Recorder()
    elector.start(seen)
    return elector, seen


def crash(elector: EtcdElector) -> None:
    """As kill -9 would: the election thread is gone, nothing is revoked."""
    elector._stop.set()
    if elector._thread is not None:
        elector._thread.join()


@pytest.fixture()
def electors() -> Iterator[list[EtcdElector]]:
    made: list[EtcdElector] = []
    yield made
    for elector in made:
        elector.stop()


def leaders(electors: list[EtcdElector]) -> list[EtcdElector]:
    return [e for e in electors if e.leading]


def test_one_leader_among_three_and_the_old_leader_back_is_a_standby(
        etcd_cluster: EtcdCluster, etcd_prefix: str, electors: list[EtcdElector]) -> None:  # noqa: F811
    for name in ("cp1", "cp2", "cp3"):
        electors.append(new_elector(etcd_cluster, etcd_prefix, name)[0])
    first = wait_for(lambda: leaders(electors), timeout=LEASE + 5, what="a leader")
    time.sleep(LEASE / 2)  # several campaign rounds: still exactly one
    assert leaders(electors) == first and len(first) == 1
    leader = first[0]
    assert {e.leader() for e in electors} == {Identity(name=leader.identity.name)}
    assert [(m.name, m.ready) for m in electors[0].members()] == [("cp1", True), ("cp2", True), ("cp3", True)]

    # The leader dies (kill -9): no revoke, its lease runs out; another takes over in time.
    crash(leader)
    electors.remove(leader)
    died = time.monotonic()
    successor = wait_for(lambda: leaders(electors), timeout=LEASE + 5, what="a new leader")[0]
    took = time.monotonic() - died
    assert took < LEASE + 5, f"the standby took {took:.1f}s"
    assert successor is not leader
    assert wait_for(lambda: electors[0].leader() == Identity(name=successor.identity.name), timeout=2,
                    what="everyone to see the new leader")
    # Its member key went with its lease.
    assert wait_for(lambda: leader.identity.name not in [m.name for m in electors[0].members()],
                    timeout=LEASE + 2, what="the dead member to leave the list")

    # The old leader started again: a standby, and the leader stays.
    back, seen = new_elector(etcd_cluster, etcd_prefix, leader.identity.name)
    electors.append(back)
    wait_for(lambda: back.identity.name in [m.name for m in successor.members()], timeout=LEASE,
             what="the old leader to be a member again")
    time.sleep(LEASE / 2)
    assert not back.leading and seen.changes == []
    assert successor.leading and leaders(electors) == [successor]


def test_a_leader_that_cannot_renew_steps_down_before_its_lease_ends(
        private_etcd_cluster: EtcdCluster, etcd_prefix: str, electors: list[EtcdElector]) -> None:  # noqa: F811
    cluster = private_etcd_cluster
    a, seen_a = new_elector(cluster, etcd_prefix, "cp1")
    electors.append(a)
    b, seen_b = new_elector(cluster, etcd_prefix, "cp2")
    electors.append(b)
    leader, seen = wait_for(lambda: [(e, s) for e, s in ((a, seen_a), (b, seen_b)) if e.leading], timeout=LEASE + 5,
                            what="a leader")[0]
    last_good = time.monotonic()
    cluster.stop()  # etcd wholly unavailable
    try:
        wait_for(lambda: not leader.leading, timeout=LEASE, what="the leader to step down")
        stepped = seen.changes[-1]
        assert stepped[0] is False
        # Before the lease (counted from at most the moment etcd went) could have let anyone else win.
        assert stepped[1] - last_good < LEASE
        assert not a.leading and not b.leading
        assert "etcd does not answer" in (leader.problem() or "")
    finally:
        cluster.start()
    wait_for(lambda: len(leaders([a, b])) == 1, timeout=LEASE + 5, what="a leader once etcd is back")
    wait_for(lambda: a.problem() is None and b.problem() is None, timeout=LEASE + 2, what="the problem to clear")


def test_every_etcd_request_is_timed_into_the_store_latency_histogram(
        etcd_cluster: EtcdCluster, etcd_prefix: str) -> None:  # noqa: F811
    from prometheus_client import generate_latest

    from reconciler.daemon.leaderetcd import TimedEtcdClient
    from reconciler.daemon.metrics import Metrics

    metrics = Metrics()
    client = TimedEtcdClient(etcd_cluster.endpoints, timeout=2.0, observe=metrics.store_request)
    kv = EtcdLeaseKV(client, prefix=etcd_prefix)
    lease = kv.grant(5)
    assert kv.create("k", "v", lease) and not kv.create("k", "w", lease)
    assert kv.get("k") == ("v", lease)
    assert kv.keepalive(lease) > 0
    metrics.leader.set(1)
    text = generate_latest(metrics.registry).decode()
    for operation in ("grant", "txn", "range", "keepalive"):
        assert f'reconciler_store_request_duration_seconds_count{{operation="{operation}"}}' in text, operation
    assert "reconciler_leader 1.0" in text
    kv.revoke(lease)
    assert kv.get("k") is None  # the key went with its lease
