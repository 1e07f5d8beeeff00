"""RollingUpdate (rolling.py): Kubernetes' fencepost scenarios S1-S3 and S9, driven through the real controllers."""
from __future__ import annotations

from reconciler.controllers.deployment.rolling import live_pods
from runtime.driver import NodeUnreachable
from tests.harness.sim import deployment
from tests.unit.controllers.deployment.scenarios import crashloop, start, watch_bounds


def test_s1_surge_1_unavailable_0_never_over_11_nor_under_10(sim):
    start(sim, replicas=10, surge=1, unavailable=0)
    seen = watch_bounds(sim, max_live=11, min_available=10)
    sim.apply(deployment(replicas=10, image="hello:v2", surge=1, unavailable=0, commit="c2"))
    sim.settle()
    assert sim.sizes("hello:v1", "hello:v2") == (0, 10)
    assert len(sim.pods(image="hello:v2")) == 10 and not sim.pods(image="hello:v1")
    assert seen["max_live"] == 11 and seen["min_available"] == 10


def test_s2_25_percent_surge_3_unavailable_2(sim):
    start(sim, replicas=10, surge="25%", unavailable="25%")
    seen = watch_bounds(sim, max_live=13, min_available=8)
    sim.apply(deployment(replicas=10, image="hello:v2", surge="25%", unavailable="25%", commit="c2"))
    sim.settle()
    assert sim.sizes("hello:v1", "hello:v2") == (0, 10)
    assert seen["max_live"] == 13 and seen["min_available"] == 8


def test_s3_no_surge_one_unavailable(sim):
    start(sim, replicas=3, surge=0, unavailable=1)
    seen = watch_bounds(sim, max_live=3, min_available=2)
    sim.apply(deployment(replicas=3, image="hello:v2", surge=0, unavailable=1, commit="c2"))
    sim.settle()
    assert sim.sizes("hello:v1", "hello:v2") == (0, 3)
    assert seen["min_available"] == 2


def test_s9_min_ready_seconds_holds_old_pods(sim):
    start(sim, replicas=3, surge=1, unavailable=0, min_ready=30)
    sim.advance(31)
    assert sim.deployment()["status"]["availableReplicas"] == 3
    seen = watch_bounds(sim, max_live=4, min_available=3, min_ready=30)
    sim.apply(deployment(replicas=3, image="hello:v2", surge=1, unavailable=0, min_ready=30, commit="c2"))
    sim.settle()
    assert sim.sizes("hello:v1", "hello:v2") == (3, 1)
    sim.advance(20)
    assert sim.sizes("hello:v1", "hello:v2") == (3, 1), "a pod ready for 20 s is not available yet"
    sim.advance(11)
    assert sim.sizes("hello:v1", "hello:v2") == (2, 2)
    for _ in range(6):
        sim.advance(31)
    assert sim.sizes("hello:v1", "hello:v2") == (0, 3)
    assert seen["min_available"] == 3


def test_new_commit_supersedes_a_stuck_rollout_at_once(sim):
    crashloop(sim)
    sim.apply(deployment(replicas=10, image="hello:v2", surge=3, unavailable=2, commit="c3"))
    sim.settle()
    assert sim.sizes("hello:v1", "hello:bad", "hello:v2") == (0, 0, 10)


def _rs(name: str, replicas: int) -> dict:
    return {"metadata": {"name": name}, "spec": {"replicas": replicas}}


def _pod(*, terminating: bool = False) -> dict:
    meta: dict = {"name": "p"}
    if terminating:
        meta["deletionTimestamp"] = "2027-01-15T08:00:00Z"
    return {"metadata": meta, "spec": {}, "status": {"phase": "Running"}}


def test_live_pods_count_promised_ones_and_terminating_ones_only_when_asked():
    # "a": spec 2 but 3 active pods (a scale-down not acted on yet) plus one terminating;
    # "b": spec 2 with no pods yet (promised).
    pods = {"a": [_pod(), _pod(), _pod(), _pod(terminating=True)], "b": []}
    assert live_pods([_rs("a", 2), _rs("b", 2)], pods, count_terminating=False) == 3 + 2  # TerminationStarted
    assert live_pods([_rs("a", 2), _rs("b", 2)], pods, count_terminating=True) == 3 + 1 + 2  # TerminationComplete


def _slow_sigterm(sim, monkeypatch) -> None:
    """Pods marked for deletion stay terminating: the engine takes no stop or removal (as while
    apps drain for their grace period), so the kubelet cannot finish them until ``monkeypatch.undo``."""
    def busy(**_: object) -> None:
        raise NodeUnreachable("draining")

    for method in ("stop_pod", "stop_container", "remove_pod"):
        monkeypatch.setattr(sim.driver, method, busy)


def _terminating(sim, image: str) -> int:
    return sum(1 for p in sim.pods(image=image) if p["metadata"].get("deletionTimestamp"))


def test_by_default_the_next_pod_starts_while_the_old_one_terminates(sim, monkeypatch):
    # Kubernetes' default (podReplacementPolicy absent = TerminationStarted): a terminating pod no
    # longer counts toward replicas + maxSurge, so a slow SIGTERM never holds the rollout up.
    start(sim, replicas=3, surge=1, unavailable=0)
    _slow_sigterm(sim, monkeypatch)
    sim.apply(deployment(replicas=3, image="hello:v2", surge=1, unavailable=0, commit="c2"))
    sim.settle()
    assert sim.sizes("hello:v1", "hello:v2") == (0, 3)
    assert sim.available() == 3 and _terminating(sim, "hello:v1") == 3
    assert sim.deployment()["status"]["updatedReplicas"] == 3


def test_termination_complete_waits_for_each_old_pod_to_go(sim, monkeypatch):
    start(sim, replicas=3, surge=1, unavailable=0)
    _slow_sigterm(sim, monkeypatch)
    d = deployment(replicas=3, image="hello:v2", surge=1, unavailable=0, commit="c2")
    d["spec"]["podReplacementPolicy"] = "TerminationComplete"
    seen = watch_bounds(sim, max_live=4, min_available=3)  # every pod object, terminating ones too
    sim.apply(d)
    sim.settle()
    # One step taken, then held: the old pod is still within its grace period.
    assert sim.sizes("hello:v1", "hello:v2") == (2, 1) and _terminating(sim, "hello:v1") == 1
    monkeypatch.undo()  # the apps exit: the kubelet finishes each old pod, and the next step runs
    for _ in range(3):
        sim.advance(31)  # past the kubelet's back-off for the refused teardowns
    assert sim.sizes("hello:v1", "hello:v2") == (0, 3) and not sim.pods(image="hello:v1")
    assert seen["max_live"] == 4
