"""The leader/standby switch: verdicts applied in order, off the elector's thread, and a clean stop
that stops the leader's parts before it gives up the lease."""
from __future__ import annotations

import threading
import time

from reconciler.daemon.leader import Identity, Member, OnChange, SoleElector
from reconciler.daemon.leadership import LEADER, STANDBY, Leadership
from tests.harness.waiting import wait_for


class ManualElector:
    store = "etcd"

    def __init__(self, log: list[str]) -> None:
        self.identity = Identity(name="cp1")
        self.on_change: OnChange | None = None
        self.log = log

    @property
    def leading(self) -> bool:
        return False

    def start(self, on_change: OnChange) -> None:
        self.on_change = on_change

    def stop(self) -> None:
        self.log.append("lease given up")
        if self.on_change is not None:
            self.on_change(False)

    def leader(self) -> Identity | None:
        return None

    def members(self) -> list[Member]:
        return []

    def problem(self) -> str | None:
        return None


def test_verdicts_run_lead_and_follow_in_order_on_the_switch_thread() -> None:
    log: list[str] = []
    threads: set[str] = set()
    elector = ManualElector(log)

    def lead() -> None:
        threads.add(threading.current_thread().name)
        time.sleep(0.05)  # a slow start does not reorder a loss that follows it
        log.append("lead")

    def follow() -> None:
        log.append("follow")

    roles: list[str] = []
    switch = Leadership(elector=elector, lead=lead, follow=follow, on_role=roles.append)
    switch.start()
    assert elector.on_change is not None
    elector.on_change(True)
    elector.on_change(False)
    elector.on_change(True)
    wait_for(lambda: log.count("lead") == 2)
    assert log == ["lead", "follow", "lead"]
    assert roles == [LEADER, STANDBY, LEADER]
    assert threads == {"leadership"}  # never the elector's thread: its renewals go on meanwhile
    assert switch.leading and switch.role == LEADER
    switch.stop()
    # The leader's parts stop before the lease is given up, so no standby acts while they run.
    assert log[-2:] == ["follow", "lease given up"]
    assert switch.role == STANDBY


def test_a_repeated_verdict_does_nothing() -> None:
    log: list[str] = []
    elector = ManualElector(log)
    switch = Leadership(elector=elector, lead=lambda: log.append("lead"), follow=lambda: log.append("follow"))
    switch.start()
    assert elector.on_change is not None
    elector.on_change(False)  # a standby told it is a standby
    elector.on_change(True)
    elector.on_change(True)
    wait_for(lambda: switch.settled.is_set() and "lead" in log)
    switch.stop()
    assert log == ["lead", "follow", "lease given up"]


def test_with_sqlite_the_daemon_leads_from_start_to_stop() -> None:
    log: list[str] = []
    switch = Leadership(elector=SoleElector(Identity(name="cp1")), lead=lambda: log.append("lead"),
                        follow=lambda: log.append("follow"))
    switch.start()
    wait_for(lambda: log == ["lead"])
    assert switch.role == LEADER
    switch.stop()
    assert log == ["lead", "follow"]
