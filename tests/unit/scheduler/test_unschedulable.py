"""The unschedulable set (kube-scheduler's scheduling queue semantics): back-off sequence,
parking until a cluster event or the 5-minute cap, moves during an attempt; and the scheduler
on fake nodes writing FailedScheduling only when it really retries a pod."""
from __future__ import annotations

import pytest

from reconciler.scheduler.unschedulable import (
    MAX_IN_UNSCHEDULABLE,
    UnschedulablePods,
    Verdict,
    backoff_duration,
)
from tests.harness.sim_multi import MultiSim, replicaset

KEY = ("default", "web-1")


@pytest.mark.parametrize(("attempts", "seconds"), [(0, 1), (1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (6, 10), (50, 10)])
def test_backoff_doubles_from_one_second_to_ten(attempts, seconds):
    assert backoff_duration(attempts) == seconds


def fail(pods: UnschedulablePods, now: float, *, message: str = "0/1 nodes are available", cycle: int | None = None):
    return pods.failed(KEY, signature="s", message=message, now=now,
                       cycle=pods.cycle() if cycle is None else cycle)


def test_a_failed_pod_is_parked_until_moved_then_waits_out_its_backoff():
    pods = UnschedulablePods()
    assert pods.verdict(KEY, signature="s", now=0) == (Verdict.RETRY, 0.0)  # never tried
    first = fail(pods, 100)
    assert first.retry_in == MAX_IN_UNSCHEDULABLE and first.new_message and first.attempts == 1
    # Nothing happened: parked, however often it is looked at (resyncs, its own status writes).
    assert pods.verdict(KEY, signature="s", now=150)[0] is Verdict.PARKED
    assert pods.move_all() == [KEY]
    assert pods.move_all() == []  # moved already: not queued twice
    assert pods.verdict(KEY, signature="s", now=150) == (Verdict.RETRY, 0.0)  # 1 s back-off long over
    second = fail(pods, 150)
    assert not second.new_message and second.attempts == 2
    pods.move_all()
    assert pods.verdict(KEY, signature="s", now=150.5) == (Verdict.BACKING_OFF, 1.5)  # 2 s after the 2nd
    assert pods.verdict(KEY, signature="s", now=152)[0] is Verdict.RETRY


@pytest.mark.parametrize(("parked_for", "verdict"), [(0, Verdict.PARKED), (MAX_IN_UNSCHEDULABLE - 1, Verdict.PARKED),
                                                     (MAX_IN_UNSCHEDULABLE, Verdict.RETRY)])
def test_five_minutes_parked_at_most(parked_for, verdict):
    pods = UnschedulablePods()
    fail(pods, 0)
    assert pods.verdict(KEY, signature="s", now=parked_for)[0] is verdict


def test_its_own_spec_change_retries_it_but_not_a_status_write():
    pods = UnschedulablePods()
    fail(pods, 0)
    assert pods.verdict(KEY, signature="s", now=5)[0] is Verdict.PARKED
    assert pods.verdict(KEY, signature="other selector", now=5)[0] is Verdict.RETRY


def test_a_move_during_an_attempt_is_not_lost():
    pods = UnschedulablePods()
    fail(pods, 0)
    cycle = pods.cycle()  # the attempt starts (it reads the nodes) ...
    pods.move_all()  # ... a Node turns Ready meanwhile ...
    failure = fail(pods, 1, cycle=cycle)  # ... and the attempt fails on what it read
    assert failure.retry_in == 2  # its back-off, not the 5-minute cap
    assert pods.verdict(KEY, signature="s", now=3)[0] is Verdict.RETRY


def test_forget_and_new_message():
    pods = UnschedulablePods()
    fail(pods, 0)
    assert fail(pods, 1, message="another reason").new_message
    pods.forget(KEY)
    assert KEY not in pods and len(pods) == 0
    assert pods.verdict(KEY, signature="s", now=2) == (Verdict.RETRY, 0.0)


# -- the scheduler on fake nodes ---------------------------------------------------------------
def failed_counts(sim: MultiSim, name: str) -> list[int]:
    return [e["count"] for e in sim.events(name) if e["reason"] == "FailedScheduling"]


def test_no_event_write_for_a_pod_not_retried(sim):
    sim.apply(replicaset(replicas=1, node_selector={"disk": "ssd"}))
    (pod,) = sim.pods("web")
    name = pod["metadata"]["name"]
    assert failed_counts(sim, name) == [1]
    # Heartbeats (Node writes that change nothing placement reads), resyncs, a full pass: no retry.
    sim.advance(MAX_IN_UNSCHEDULABLE - 10)
    sim.manager.manager.resync(full=True)
    sim.settle()
    assert failed_counts(sim, name) == [1]
    assert ("default", name) in sim.manager.scheduler.unschedulable  # still parked, not forgotten
    # The 5-minute cap: retried once more.
    sim.advance(11)
    assert failed_counts(sim, name) == [2]


def test_a_node_labelled_moves_the_pod_back_at_once(sim):
    sim.apply(replicaset(replicas=1, node_selector={"disk": "ssd"}))
    (pod,) = sim.pods("web")
    assert not pod["spec"].get("nodeName")
    sim.advance(30)  # its back-off (1 s) is over; parked

    def label(cur: dict) -> dict:
        cur["metadata"].setdefault("labels", {})["disk"] = "ssd"
        return cur

    sim.store.update("Node", "", "node2", label)
    sim.settle()  # no time passes: moved by the Node change itself
    assert sim.placement("web") == {"node2": 1}
    assert ("default", pod["metadata"]["name"]) not in sim.manager.scheduler.unschedulable


def test_a_node_turning_ready_moves_the_pod_back_at_once(sim):
    sim.kill("node1")
    sim.advance(60)
    assert not sim.ready("node1")
    sim.apply(replicaset(replicas=1, node_selector={"kubernetes.io/hostname": "node1"}))
    name = sim.pods("web")[0]["metadata"]["name"]
    sim.advance(30)
    assert failed_counts(sim, name) == [1]  # parked: not retried every few seconds
    sim.revive("node1")
    took = sim.advance_until(lambda: sim.placement("web") == {"node1": 1}, limit=10, what="placed on node1")
    assert took <= 6  # the next heartbeat marks it Ready, not the 5-minute cap
