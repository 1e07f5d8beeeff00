"""Kubernetes' rollout scenarios, driven through the real controllers on the fake driver."""
from __future__ import annotations

import pytest

from reconciler.core import objects as o
from reconciler.core.keys import ANN_COMMIT, ANN_REVISION, ANN_REVISION_HISTORY, LABEL_TEMPLATE_HASH
from tests.harness.sim import Sim, deployment


@pytest.fixture
def sim(tmp_path):
    s = Sim(tmp_path)
    yield s
    s.store.close()


def start(sim: Sim, **kw) -> None:
    sim.apply(deployment(**kw))
    sim.settle()
    assert sim.available() == kw.get("replicas", 10)


def watch_bounds(sim: Sim, *, max_live: int, min_available: int, min_ready: int = 0) -> dict:
    seen = {"max_live": 0, "min_available": 10**9}

    def check() -> None:
        seen["max_live"] = max(seen["max_live"], sim.live())
        seen["min_available"] = min(seen["min_available"], sim.available(min_ready=min_ready))
        assert sim.live() <= max_live, f"{sim.live()} live pods > {max_live}"
        assert sim.available(min_ready=min_ready) >= min_available, "availability fell below the minimum"

    sim.checks.append(check)
    return seen


def test_first_rollout_creates_replicas_and_completes(sim):
    start(sim, replicas=3)
    d = sim.deployment()
    assert d["status"]["readyReplicas"] == 3 and d["status"]["updatedReplicas"] == 3
    assert sim.condition("Available")["status"] == "True"
    assert sim.condition("Progressing")["reason"] == "NewReplicaSetAvailable"
    rs = sim.rs("hello:v1")
    assert o.annotations(rs)[ANN_REVISION] == "1"
    assert all(p["metadata"]["labels"][LABEL_TEMPLATE_HASH] for p in sim.pods())
    assert {p["spec"]["nodeName"] for p in sim.pods()} == {"node1"}
    assert len({p["status"]["podIP"] for p in sim.pods()}) == 3


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


def crashloop(sim: Sim, **kw) -> None:
    start(sim, replicas=10, surge=3, unavailable=2, **kw)
    sim.driver.crashing.add("hello:bad")
    sim.apply(deployment(replicas=10, image="hello:bad", surge=3, unavailable=2, commit="c2", **kw))
    sim.settle()


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


def test_s5_undo_from_crashloop_reuses_old_replicaset_as_revision_3(sim):
    crashloop(sim)
    old_name = sim.rs("hello:v1")["metadata"]["name"]
    sizes = []
    sim.checks.append(lambda: sizes.append(sim.sizes("hello:v1", "hello:bad")))
    sim.apply(deployment(replicas=10, image="hello:v1", surge=3, unavailable=2, commit="c3"))
    sim.settle()
    rs = sim.rs("hello:v1")
    assert rs["metadata"]["name"] == old_name
    assert o.annotations(rs)[ANN_REVISION] == "3"
    assert o.annotations(rs)[ANN_REVISION_HISTORY] == "1"
    assert o.annotations(rs)[ANN_COMMIT] == "c3"
    assert sim.sizes("hello:v1", "hello:bad") == (10, 0)
    # The crashing set is drained first (it has no available pods), then v1 grows.
    first_bad_zero = next(i for i, s in enumerate(sizes) if s[1] == 0)
    assert all(s[0] == 8 for s in sizes[:first_bad_zero])
    revisions = sim.store.revisions(namespace="default", deployment="web")
    assert [(r["revision"], r["commit"]) for r in revisions] == [(1, "c1"), (2, "c2"), (3, "c3")]


@pytest.mark.parametrize("new_replicas, expected", [(15, (11, 7)), (5, (5, 3))])
def test_s7_proportional_scaling_mid_rollout(sim, new_replicas, expected):
    crashloop(sim)
    sizes: list[tuple[int, ...]] = []
    sim.checks.append(lambda: sizes.append(sim.sizes("hello:v1", "hello:bad")))
    sim.apply(deployment(replicas=new_replicas, image="hello:bad", surge=3, unavailable=2, commit="c3"))
    sim.settle()
    # The scaling event itself resizes both sets in proportion (one write per set)...
    changed = [s for s in dict.fromkeys(sizes) if s != (8, 5)]
    assert changed[1] == expected, changed
    # ...and the rollout then goes on from there under the usual fenceposts.
    assert sum(sim.sizes("hello:v1", "hello:bad")) <= new_replicas + 3
    if new_replicas == 15:
        assert sim.sizes("hello:v1", "hello:bad") == (11, 7), "crash-looping pods block any further step"


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


def test_s10_revision_history_limit_cleans_lowest_after_completion(sim):
    start(sim, replicas=2, history=2)
    for i, image in enumerate(["hello:v2", "hello:v3", "hello:v4"], start=2):
        sim.apply(deployment(replicas=2, image=image, history=2, commit=f"c{i}"))
        sim.settle()
    revisions = sorted(int(o.annotations(rs)[ANN_REVISION]) for rs in sim.store.list("ReplicaSet"))
    assert revisions == [2, 3, 4]
    # History outlives the ReplicaSets.
    assert [r["revision"] for r in sim.store.revisions(namespace="default", deployment="web")] == [1, 2, 3, 4]


def test_recreate_stops_all_old_pods_before_new(sim):
    start(sim, replicas=3, strategy="Recreate")
    overlap = []
    sim.checks.append(lambda: overlap.append(bool(sim.pods(image="hello:v1")) and bool(sim.pods(image="hello:v2"))))
    sim.apply(deployment(replicas=3, image="hello:v2", strategy="Recreate", commit="c2"))
    sim.settle()
    assert len(sim.pods(image="hello:v2")) == 3 and not sim.pods(image="hello:v1")
    assert not any(overlap)


def test_paused_deployment_does_not_roll(sim):
    start(sim, replicas=3)
    d = deployment(replicas=3, image="hello:v2", commit="c2")
    d["spec"]["paused"] = True
    sim.apply(d)
    sim.settle()
    assert len(sim.store.list("ReplicaSet")) == 1
    assert sim.condition("Progressing")["reason"] == "DeploymentPaused"
    d["spec"]["paused"] = False
    sim.apply(d)
    sim.settle()
    assert sim.sizes("hello:v1", "hello:v2") == (0, 3)


def test_deleting_the_deployment_collects_its_pods(sim):
    start(sim, replicas=3)
    sim.store.delete("Deployment", "default", "web")
    sim.manager.resync()
    sim.settle()
    assert not sim.store.list("ReplicaSet") and not sim.store.list("Pod")
    assert sim.driver.list_pods() == []


def test_killed_container_is_restarted_and_counted(sim):
    start(sim, replicas=1)
    pod = sim.pods()[0]
    sim.driver.crash(namespace="default", name=pod["metadata"]["name"], container="app", exit_code=137)
    sim.settle()
    cs = sim.store.get("Pod", "default", pod["metadata"]["name"])["status"]["containerStatuses"][0]
    assert cs["restartCount"] == 1 and "running" in cs["state"]


def test_container_removed_behind_our_back_is_recreated(sim):
    start(sim, replicas=1)
    pod = sim.pods()[0]
    sim.driver.remove_container(namespace="default", name=pod["metadata"]["name"], container="app")
    sim.settle()
    state = [p for p in sim.driver.list_pods() if p.name == pod["metadata"]["name"]][0]
    assert [c.state for c in state.containers] == ["running"]
    assert sim.store.get("Pod", "default", pod["metadata"]["name"])["status"]["containerStatuses"][0]["restartCount"] == 1


def test_stray_engine_pod_is_removed(sim):
    from runtime.driver import ContainerRequest, PodRequest
    start(sim, replicas=1)
    sim.driver.add_image("hello:v1")
    sim.driver.create_pod(PodRequest(namespace="default", name="stray", uid="u-stray", pod_ip="127.244.0.99",
                                     containers=(ContainerRequest(name="app", image="hello:v1"),)))
    sim.driver.start_pod(namespace="default", name="stray")
    sim.settle()
    assert [p.name for p in sim.driver.list_pods()] == [sim.pods()[0]["metadata"]["name"]]


def auto(d: dict) -> dict:
    d["metadata"]["annotations"]["reconciler.io/auto-rollback"] = "true"
    return d


def test_auto_rollback_on_progress_deadline_returns_to_last_complete_revision(sim):
    from reconciler.gitops.autorollback import failures, pinned_body
    sim.apply(auto(deployment(replicas=3, surge=1, unavailable=0, pds=30)))
    sim.settle()
    sim.driver.crashing.add("hello:bad")
    bad = auto(deployment(replicas=3, image="hello:bad", surge=1, unavailable=0, pds=30, commit="c2"))
    sim.apply(bad)
    sim.settle()
    for _ in range(5):
        sim.advance(10)
    d = sim.deployment()
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "hello:v1"
    assert d["metadata"]["annotations"]["reconciler.io/rolled-back-from"] == "c2"
    sim.settle()
    assert sim.sizes("hello:v1", "hello:bad") == (3, 0)
    assert [f["commit"] for f in failures(sim.store)] == ["c2"]
    # Git still says hello:bad: the applier keeps the good template (not retried) ...
    body, stale = pinned_body(sim.store, {"metadata": {"name": "web", "namespace": "default"}, "spec": bad["spec"]})
    assert not stale and body["spec"]["template"]["spec"]["containers"][0]["image"] == "hello:v1"
    # ... until the manifest changes: then the pin is stale and Git applies as it is.
    fixed = deployment(replicas=3, image="hello:v2", commit="c3")
    body, stale = pinned_body(sim.store, {"metadata": {"name": "web", "namespace": "default"}, "spec": fixed["spec"]})
    assert stale and body["spec"]["template"]["spec"]["containers"][0]["image"] == "hello:v2"


def test_auto_rollback_is_off_without_the_annotation(sim):
    start(sim, replicas=3, pds=30)
    sim.driver.crashing.add("hello:bad")
    sim.apply(deployment(replicas=3, image="hello:bad", pds=30, commit="c2"))
    sim.settle()
    for _ in range(5):
        sim.advance(10)
    assert sim.deployment()["spec"]["template"]["spec"]["containers"][0]["image"] == "hello:bad"
    assert sim.condition("Progressing")["reason"] == "ProgressDeadlineExceeded"


def test_new_commit_supersedes_a_stuck_rollout_at_once(sim):
    crashloop(sim)
    sim.apply(deployment(replicas=10, image="hello:v2", surge=3, unavailable=2, commit="c3"))
    sim.settle()
    assert sim.sizes("hello:v1", "hello:bad", "hello:v2") == (0, 0, 10)
