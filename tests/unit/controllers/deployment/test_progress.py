"""Status and the progress deadline (progress.py): S4, and the condition rules one by one."""
from __future__ import annotations

from reconciler.controllers.deployment.progress import complete, progressed, timed_out
from reconciler.core.clock import to_rfc3339
from tests.unit.controllers.deployment.scenarios import crashloop


def test_s4_crashloop_stalls_at_8_5_then_deadline(sim):
    crashloop(sim, pds=60)
    assert sim.sizes("hello:v1", "hello:bad") == (8, 5)
    assert sim.available() == 8
    assert sim.condition("Progressing")["status"] == "True"
    for _ in range(8):
        sim.advance(10)
    assert sim.sizes("hello:v1", "hello:bad") == (8, 5)
    cond = sim.condition("Progressing")
    assert (cond["status"], cond["reason"]) == ("False", "ProgressDeadlineExceeded")
    statuses = [p["status"]["containerStatuses"][0] for p in sim.pods(image="hello:bad")]
    assert any(cs["restartCount"] > 0 for cs in statuses)
    assert any(cs["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff" for cs in statuses)


def _d(replicas: int = 3, generation: int = 2) -> dict:
    return {"metadata": {"generation": generation}, "spec": {"replicas": replicas}}


def _status(*, replicas: int = 3, updated: int = 3, ready: int = 3, available: int = 3,
            observed: int = 2) -> dict:
    return {"replicas": replicas, "updatedReplicas": updated, "readyReplicas": ready,
            "availableReplicas": available, "observedGeneration": observed}


def test_complete_needs_every_pod_updated_available_and_the_spec_observed():
    assert complete(_d(), _status())
    assert not complete(_d(), _status(available=2))
    assert not complete(_d(), _status(replicas=4))  # an old pod is still there
    assert not complete(_d(), _status(updated=2))
    assert not complete(_d(), _status(observed=1))


def test_progressed_on_more_updated_ready_or_available_pods_or_fewer_old_ones():
    before = _status(replicas=5, updated=2, ready=4, available=4)
    assert not progressed(before, _status(replicas=5, updated=2, ready=4, available=4))
    assert progressed(before, _status(replicas=5, updated=3, ready=4, available=4))
    assert progressed(before, _status(replicas=5, updated=2, ready=5, available=4))
    assert progressed(before, _status(replicas=5, updated=2, ready=4, available=5))
    assert progressed(before, _status(replicas=4, updated=2, ready=4, available=4))  # 3 old -> 2 old


def test_timed_out_after_the_deadline_since_the_last_update():
    now = 1_800_000_000.0
    cond = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
            "lastUpdateTime": to_rfc3339(now - 60)}
    assert not timed_out(cond, pds=60, now=now)
    assert timed_out(cond, pds=59, now=now)
    assert not timed_out(None, pds=0, now=now)
    assert not timed_out({**cond, "reason": "NewReplicaSetAvailable"}, pds=0, now=now)
    assert timed_out({**cond, "reason": "ProgressDeadlineExceeded"}, pds=10**6, now=now)
