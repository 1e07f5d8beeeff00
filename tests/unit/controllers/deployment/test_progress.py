"""Status and the progress deadline (progress.py): S4, and the condition rules one by one."""
from __future__ import annotations

import pytest

from reconciler.controllers.deployment.progress import complete, new_replicaset_condition, progressed, timed_out
from reconciler.core import objects as o
from reconciler.core.clock import to_rfc3339
from tests.harness.sim import deployment
from tests.unit.controllers.deployment.scenarios import crashloop, start


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


T0, NOW = 1_800_000_000.0, 1_800_000_600.0


@pytest.mark.parametrize("before, created, reason, transition", [
    # (Progressing before, new ReplicaSet created?, reason after, lastTransitionTime after)
    (None, True, "NewReplicaSetCreated", NOW),
    (("True", "NewReplicaSetAvailable"), True, "NewReplicaSetCreated", T0),  # a new rollout after a complete one
    (("True", "ReplicaSetUpdated"), True, "NewReplicaSetCreated", T0),        # superseded mid-rollout
    (("False", "ProgressDeadlineExceeded"), True, "NewReplicaSetCreated", NOW),  # a fix after a stuck rollout
    (("False", "ProgressDeadlineExceeded"), False, "FoundNewReplicaSet", NOW),   # an undo after a stuck rollout
    (("True", "ReplicaSetUpdated"), False, "FoundNewReplicaSet", T0),         # an undo mid-rollout
    (None, False, "FoundNewReplicaSet", NOW),
])
def test_a_new_replicaset_restarts_progressing_and_its_deadline(before, created, reason, transition):
    status: dict = {"conditions": []}
    if before is not None:
        status["conditions"].append({"type": "Progressing", "status": before[0], "reason": before[1],
                                     "lastUpdateTime": to_rfc3339(T0), "lastTransitionTime": to_rfc3339(T0)})
    o.set_condition(status, new_replicaset_condition("web-abc", created=created), now=NOW)
    cond = o.get_condition(status, "Progressing")
    assert cond is not None
    assert (cond["status"], cond["reason"]) == ("True", reason)
    assert '"web-abc"' in cond["message"]
    assert cond["lastUpdateTime"] == to_rfc3339(NOW), "the progress deadline counts from now"
    assert cond["lastTransitionTime"] == to_rfc3339(transition)
    assert not timed_out(cond, pds=599, now=NOW + 598)


def test_an_undo_after_the_deadline_is_never_seen_as_the_stuck_rollout(sim):
    """The revert's first write says FoundNewReplicaSet: no status after the undo still
    reports the deadline the undone rollout exceeded (Kubernetes keeps it until the
    reverted ReplicaSet reports more pods; the auto-rollback hook read it as a failure)."""
    start(sim, replicas=1, pds=12)
    sim.driver.set_image_pull_fails("hello:bad")
    sim.apply(deployment(replicas=1, image="hello:bad", pds=12, commit="c2"))
    sim.settle()
    for _ in range(4):
        sim.advance(5)
    assert sim.condition("Progressing")["reason"] == "ProgressDeadlineExceeded"
    seen: list[tuple[str, str]] = []

    def record() -> None:
        d = sim.deployment()
        if d["spec"]["template"]["spec"]["containers"][0]["image"] == "hello:v1":
            cond = sim.condition("Progressing")
            if not seen or seen[-1] != (cond["status"], cond["reason"]):
                seen.append((cond["status"], cond["reason"]))

    sim.checks.append(record)
    sim.apply(deployment(replicas=1, image="hello:v1", pds=12, commit="c3"))
    sim.settle()
    # The first entry is the spec write itself (the status is not the controller's yet).
    assert seen[0] == ("False", "ProgressDeadlineExceeded"), seen
    assert seen[1] == ("True", "FoundNewReplicaSet"), seen
    assert ("False", "ProgressDeadlineExceeded") not in seen[1:], seen
    assert seen[-1] == ("True", "NewReplicaSetAvailable"), seen
