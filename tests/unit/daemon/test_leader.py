"""The election's rules, step by step, on an in-memory etcd (a fake of ``LeaseKV`` with a clock).

Each test drives ``EtcdElector._tick()`` by hand with a manual clock, so the timings the module
promises (renew every third of the lease, step down at the first failed or late renewal, or when
the key is no longer this daemon's) are checked exactly. The same behaviour against a real
3-member etcd is in test_leader_etcd.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from reconciler.daemon.leader import (
    LEADER_KEY,
    MEMBERS_PREFIX,
    EtcdElector,
    Identity,
    SoleElector,
    decode_identity,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeEtcd:
    """Leases and keys as etcd keeps them: a key bound to a lease goes when the lease does."""

    clock: Clock
    leases: dict[int, float] = field(default_factory=dict)  # id -> expiry
    ttls: dict[int, float] = field(default_factory=dict)
    keys: dict[str, tuple[str, int]] = field(default_factory=dict)
    down: bool = False
    next_id: int = 1
    slow: float = 0.0  # seconds each call takes (the clock moves)

    def _call(self) -> None:
        if self.down:
            raise ConnectionError("etcd is unreachable")
        self.clock.now += self.slow
        for lease, expiry in list(self.leases.items()):
            if expiry <= self.clock.now:
                self._drop(lease)

    def _drop(self, lease: int) -> None:
        self.leases.pop(lease, None)
        for key, (_value, owner) in list(self.keys.items()):
            if owner == lease:
                del self.keys[key]

    def grant(self, ttl: float) -> int:
        self._call()
        lease, self.next_id = self.next_id, self.next_id + 1
        self.leases[lease] = self.clock.now + ttl
        self.ttls[lease] = ttl
        return lease

    def keepalive(self, lease: int) -> float:
        self._call()
        if lease not in self.leases:
            return -1
        self.leases[lease] = self.clock.now + self.ttls[lease]
        return self.ttls[lease]

    def revoke(self, lease: int) -> None:
        self._call()
        self._drop(lease)

    def create(self, key: str, value: str, lease: int) -> bool:
        self._call()
        if key in self.keys:
            return False
        self.keys[key] = (value, lease)
        return True

    def put(self, key: str, value: str, lease: int) -> None:
        self._call()
        self.keys[key] = (value, lease)

    def get(self, key: str) -> tuple[str, int] | None:
        self._call()
        return self.keys.get(key)

    def get_prefix(self, prefix: str) -> list[tuple[str, str]]:
        self._call()
        return sorted((k, v) for k, (v, _lease) in self.keys.items() if k.startswith(prefix))


class Recorder:
    def __init__(self) -> None:
        self.changes: list[bool] = []

    def __call__(self, leading: bool) -> None:
        self.changes.append(leading)


def elector(etcd: FakeEtcd, name: str, lease: float = 15.0) -> tuple[EtcdElector, Recorder]:
    e = EtcdElector(kv=etcd, identity=Identity(name=name, api=f"https://{name}:6443"), lease_duration=lease,
                    monotonic=etcd.clock)
    seen = Recorder()
    e._on_change = seen
    return e, seen


def test_one_of_two_wins_and_both_are_members() -> None:
    etcd = FakeEtcd(Clock())
    a, seen_a = elector(etcd, "cp1")
    b, seen_b = elector(etcd, "cp2")
    a._tick()
    b._tick()
    assert (a.leading, b.leading) == (True, False)
    assert seen_a.changes == [True] and seen_b.changes == []
    assert decode_identity(etcd.keys[LEADER_KEY][0]) == Identity(name="cp1", api="https://cp1:6443")
    leader = b.leader()
    assert leader is not None and leader.name == "cp1"  # every instance reads the same leader
    assert [(m.name, m.ready) for m in b.members()] == [("cp1", True), ("cp2", True)]
    assert sorted(etcd.keys) == [LEADER_KEY, MEMBERS_PREFIX + "cp1", MEMBERS_PREFIX + "cp2"]


def test_the_lease_is_renewed_every_third_of_its_duration() -> None:
    etcd = FakeEtcd(Clock())
    a, _ = elector(etcd, "cp1", lease=15.0)
    a._tick()
    expiry = etcd.leases[a._lease or 0]
    etcd.clock.now += 4.9
    a._tick()
    assert etcd.leases[a._lease or 0] == expiry  # not yet due
    etcd.clock.now += 0.2
    a._tick()
    assert etcd.leases[a._lease or 0] == pytest.approx(etcd.clock.now + 15.0)
    assert a._pause() <= 1.0  # the loop wakes at least every second (campaign retries)


def test_a_failed_renewal_steps_down_at_once_and_a_standby_takes_over_after_the_ttl() -> None:
    etcd = FakeEtcd(Clock())
    a, seen_a = elector(etcd, "cp1", lease=4.0)
    b, seen_b = elector(etcd, "cp2", lease=4.0)
    a._tick()
    b._tick()
    etcd.clock.now += 1.5
    etcd.down = True  # a cannot renew (and b cannot reach etcd either)
    a._tick()
    assert not a.leading and seen_a.changes == [True, False]  # in the very step that failed
    assert a.problem() and "etcd does not answer" in (a.problem() or "")
    etcd.down = False
    # a's lease could not be revoked: the key lasts until the TTL; b waits, then wins.
    b._tick()
    assert not b.leading
    etcd.clock.now += 4.0
    b._tick()
    b._tick()
    assert b.leading and seen_b.changes == [True]


def test_a_renewal_answered_too_late_steps_down() -> None:
    etcd = FakeEtcd(Clock())
    a, seen = elector(etcd, "cp1", lease=12.0)
    a._tick()
    etcd.clock.now += 4.0
    etcd.slow = 4.0  # the renewal answers 8 s after the last good one: past 7/12 of the lease
    a._tick()
    assert seen.changes == [True, False]


def test_a_leader_whose_key_is_gone_steps_down() -> None:
    etcd = FakeEtcd(Clock())
    a, seen = elector(etcd, "cp1")
    a._tick()
    etcd.keys[LEADER_KEY] = ("someone else", 999)  # e.g. deleted and taken by another lease
    a._tick()
    assert seen.changes == [True, False]


def test_an_old_leader_back_is_a_standby() -> None:
    etcd = FakeEtcd(Clock())
    a, _ = elector(etcd, "cp1", lease=4.0)
    b, _ = elector(etcd, "cp2", lease=4.0)
    a._tick()
    b._tick()
    a.stop()  # revokes: b wins at its next try, not after the TTL
    b._tick()
    assert b.leading
    again, seen = elector(etcd, "cp1", lease=4.0)
    again._tick()
    assert not again.leading and seen.changes == []
    leader = again.leader()
    assert leader is not None and leader.name == "cp2"


def test_etcd_unreachable_is_reported_and_the_member_list_still_names_this_daemon() -> None:
    etcd = FakeEtcd(Clock())
    a, _ = elector(etcd, "cp1")
    etcd.down = True
    a._tick()
    assert a.leader() is None
    assert [(m.name, m.ready) for m in a.members()] == [("cp1", False)]
    assert "etcd does not answer" in (a.problem() or "")
    etcd.down = False
    a._tick()
    assert a.leading and a.problem() is None


def test_a_lease_shorter_than_etcd_grants_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2s"):
        EtcdElector(kv=FakeEtcd(Clock()), identity=Identity(name="x"), lease_duration=1.0)


def test_sqlite_has_one_daemon_and_it_leads() -> None:
    sole = SoleElector(Identity(name="cp1"))
    seen = Recorder()
    sole.start(seen)
    assert sole.leading and seen.changes == [True]
    assert sole.leader() == Identity(name="cp1")
    assert [(m.name, m.ready) for m in sole.members()] == [("cp1", True)]
    sole.stop()
    assert seen.changes == [True, False]
