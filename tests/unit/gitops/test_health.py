"""lastAppliedCommit moves only once the commit's objects are ready (Flux's lastAppliedRevision).

Pure parts: readiness per kind (table tests), and the health check against a real
store, driven by writing object statuses the way the controllers would.
"""
from __future__ import annotations

import pytest

from reconciler.core.keys import FAILURES_KEY, HEALTH_KEY
from reconciler.core.readiness import readiness
from reconciler.gitops.health import CommitHealth, Verdict
from reconciler.store.store import Store


def deployment(name: str = "web", *, replicas: int = 3, generation_bumps: int = 0, paused: bool = False) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "paused": paused, "template": {"metadata": {"labels": {"app": name}}}}}


def dep_status(*, observed: int, replicas: int = 3, updated: int = 3, available: int = 3,
               progressing: str | None = None) -> dict:
    status: dict = {"observedGeneration": observed, "replicas": replicas, "updatedReplicas": updated,
                    "readyReplicas": available, "availableReplicas": available, "conditions": []}
    if progressing:
        status["conditions"].append({"type": "Progressing", "status": "True", "reason": progressing})
    return status


def pod(phase: str, *, ready: bool) -> dict:
    return {"kind": "Pod", "metadata": {"name": "p", "generation": 1},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


@pytest.mark.parametrize(
    ("obj", "done", "failed"),
    [
        ({**deployment(), "metadata": {"name": "web", "generation": 2}, "status": dep_status(observed=1)}, False, False),
        ({**deployment(), "metadata": {"name": "web", "generation": 2}, "status": dep_status(observed=2, updated=1)},
         False, False),
        ({**deployment(), "metadata": {"name": "web", "generation": 2}, "status": dep_status(observed=2, replicas=4)},
         False, False),
        ({**deployment(), "metadata": {"name": "web", "generation": 2}, "status": dep_status(observed=2)}, True, False),
        ({**deployment(), "metadata": {"name": "web", "generation": 2},
          "status": dep_status(observed=2, updated=1, progressing="ProgressDeadlineExceeded")}, False, True),
        # Paused: the user's choice; it must not hold every later commit back.
        ({**deployment(paused=True), "metadata": {"name": "web", "generation": 2}, "status": dep_status(observed=1)},
         True, False),
        ({"kind": "ReplicaSet", "metadata": {"name": "rs", "generation": 1}, "spec": {"replicas": 2},
          "status": {"observedGeneration": 1, "availableReplicas": 1}}, False, False),
        ({"kind": "ReplicaSet", "metadata": {"name": "rs", "generation": 1}, "spec": {"replicas": 2},
          "status": {"observedGeneration": 1, "availableReplicas": 2}}, True, False),
        (pod("Running", ready=True), True, False),
        (pod("Running", ready=False), False, False),
        (pod("Pending", ready=False), False, False),
        (pod("Succeeded", ready=False), True, False),
        (pod("Failed", ready=False), False, True),
        ({"kind": "Service", "metadata": {"name": "web"}}, True, False),
        ({"kind": "ConfigMap", "metadata": {"name": "cm"}}, True, False),
    ],
)
def test_readiness_per_kind(obj: dict, done: bool, failed: bool) -> None:
    seen = readiness(obj)
    assert (seen.done, seen.failed) == (done, failed), seen.message


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store.db")
    yield s
    s.close()


def set_status(store: Store, name: str, **kw) -> None:
    def mutate(cur: dict) -> dict:
        cur["status"] = dep_status(observed=int(cur["metadata"]["generation"]), **kw)
        return cur

    store.update("Deployment", "default", name, mutate)


def test_applied_only_once_every_object_is_ready(store: Store) -> None:
    seen: list[tuple[str, Verdict]] = []
    health = CommitHealth(store=store, on_change=lambda commit, verdict: seen.append((commit, verdict)))
    store.put(deployment("web"))
    store.put(deployment("api"))
    store.put({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"}})
    keys = [("Deployment", "default", "web"), ("Deployment", "default", "api"), ("Service", "default", "web")]
    health.begin(commit="c1", keys=keys)
    health.check()
    assert store.sync_state().get("lastAppliedCommit") is None
    assert health.status()["state"] == "Progressing"
    assert "spec update to be observed" in health.status()["message"] and "(and 1 more)" in health.status()["message"]

    set_status(store, "web")
    set_status(store, "api", updated=1, replicas=4, available=3)
    health.check()
    assert store.sync_state().get("lastAppliedCommit") is None
    assert health.status()["message"].startswith('Waiting for deployment "api" rollout to finish: 1 out of 3')

    set_status(store, "api")
    health.check()
    assert store.sync_state()["lastAppliedCommit"] == "c1"
    assert health.status() == {"commit": "c1", "state": "Healthy", "message": "all 3 objects are ready"}
    assert [(c, v.state) for c, v in seen] == [("c1", "Progressing"), ("c1", "Progressing"), ("c1", "Healthy")]


def test_a_missing_object_keeps_the_commit_progressing(store: Store) -> None:
    health = CommitHealth(store=store)
    health.begin(commit="c1", keys=[("ConfigMap", "default", "gone")])
    health.check()
    assert health.status()["state"] == "Progressing" and "configmap/gone does not exist yet" in health.status()["message"]
    assert store.sync_state().get("lastAppliedCommit") is None


def test_a_newer_commit_supersedes_the_check_and_an_old_healthy_commit_stays_applied(store: Store) -> None:
    health = CommitHealth(store=store)
    store.put(deployment("web"))
    set_status(store, "web")
    health.begin(commit="c1", keys=[("Deployment", "default", "web")])
    health.check()
    assert store.sync_state()["lastAppliedCommit"] == "c1"

    # c2 changes the template: a new generation, not yet observed.
    store.update("Deployment", "default", "web", lambda cur: {**cur, "spec": {**cur["spec"], "replicas": 4}})
    health.begin(commit="c2", keys=[("Deployment", "default", "web")])
    health.check()
    assert store.sync_state()["lastAppliedCommit"] == "c1", "c2 is not rolled out yet"
    health.begin(commit="c3", keys=[("Deployment", "default", "web")])
    set_status(store, "web", replicas=4, updated=4, available=4)
    health.check()
    assert store.sync_state()["lastAppliedCommit"] == "c3"


def test_deadline_exceeded_fails_the_commit_until_the_rollout_finishes_after_all(store: Store) -> None:
    health = CommitHealth(store=store)
    store.put(deployment("web"))
    set_status(store, "web", updated=1, progressing="ProgressDeadlineExceeded")
    health.begin(commit="c1", keys=[("Deployment", "default", "web")])
    health.check()
    assert health.status()["state"] == "Failed" and "exceeded its progress deadline" in health.status()["message"]
    assert store.sync_state().get("lastAppliedCommit") is None
    # A node came back and the rollout finished: level-based, so the commit is now applied.
    set_status(store, "web", progressing="NewReplicaSetAvailable")
    health.check()
    assert health.status()["state"] == "Healthy" and store.sync_state()["lastAppliedCommit"] == "c1"


def test_an_auto_rolled_back_deployment_fails_its_commit(store: Store) -> None:
    health = CommitHealth(store=store)
    store.put(deployment("web"))
    set_status(store, "web")  # back on the old template: ready, but not what Git declares
    store.kv_set(FAILURES_KEY, [{"commit": "c2", "file": "web.yaml", "line": 0, "namespace": "default",
                                          "name": "web", "message": "deployment/web: the rollout of commit c2 failed"}])
    health.begin(commit="c2", keys=[("Deployment", "default", "web")])
    health.check()
    assert health.status() == {"commit": "c2", "state": "Failed",
                               "message": "deployment/web: the rollout of commit c2 failed"}
    assert store.sync_state().get("lastAppliedCommit") is None


def test_a_refused_commit_stays_failed_and_survives_a_restart(tmp_path) -> None:
    first = Store(tmp_path / "store.db")
    CommitHealth(store=first).refuse(commit="bad", message="the commit has 2 manifest errors")
    first.close()
    again = Store(tmp_path / "store.db")
    try:
        health = CommitHealth(store=again)
        health.check()
        assert health.status() == {"commit": "bad", "state": "Failed", "message": "the commit has 2 manifest errors"}
        assert again.kv_get(HEALTH_KEY)["final"] is True
        assert again.sync_state().get("lastAppliedCommit") is None
    finally:
        again.close()


def test_an_empty_commit_is_healthy_at_once(store: Store) -> None:
    health = CommitHealth(store=store)
    health.begin(commit="empty", keys=[])
    health.check()
    assert store.sync_state()["lastAppliedCommit"] == "empty"


def test_a_newer_commit_begun_during_a_check_is_not_overwritten(store: Store) -> None:
    """The source worker begins c2 while the health worker is judging c1: c2's record must survive."""
    import threading

    health = CommitHealth(store=store)
    store.put(deployment("web"))
    set_status(store, "web")
    health.begin(commit="c1", keys=[("Deployment", "default", "web")])
    judge = health.evaluate
    newer = threading.Thread(target=lambda: health.begin(commit="c2", keys=[("Deployment", "default", "web")]))

    def evaluate_while_c2_begins(*, keys):
        newer.start()
        newer.join(timeout=0.5)  # blocked on the check's lock (without it, c2 is written now)
        return judge(keys=keys)

    health.evaluate = evaluate_while_c2_begins  # type: ignore[method-assign]
    health.check()
    newer.join(timeout=5)
    assert not newer.is_alive()
    assert health.status()["commit"] == "c2" and health.status()["state"] == "Progressing"
    assert store.sync_state()["lastAppliedCommit"] == "c1"  # judged healthy before c2 began
