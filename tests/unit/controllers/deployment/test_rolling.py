"""RollingUpdate (rolling.py): Kubernetes' fencepost scenarios S1-S3 and S9, driven through the real controllers."""
from __future__ import annotations

from reconciler.controllers.deployment.rolling import live_pods
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


def test_live_pods_count_terminating_pods_and_promised_ones():
    # "a": spec 2 but 3 active pods (a scale-down not acted on yet) plus one terminating;
    # "b": spec 2 with no pods yet (promised).
    pods = {"a": [_pod(), _pod(), _pod(), _pod(terminating=True)], "b": []}
    assert live_pods([_rs("a", 2), _rs("b", 2)], pods) == 3 + 1 + 2
