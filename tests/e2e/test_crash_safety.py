"""Crash safety on real parts: six commits land during rollouts, and after each one the
daemon is killed with SIGKILL at a random moment (0–2 s after the commit) and started
again. The end state must be exactly what the last commit declares, with no duplicate or
orphan pods on the engine, every revision in `rollout history` tied to its own commit,
and a further kill -9 and restart must not restart a single container.

The random moments come from a seed printed on failure; RECONCILER_CRASH_SEED replays one.
"""
from __future__ import annotations

import os
import random
import time

import pytest

from runtime.podman.driver import PodmanDriver
from tests.harness.daemon_harness import Daemon, commit, init_repo, wait_for

pytestmark = pytest.mark.podman

STEPS = 6
REPLICAS = 3

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: crash
spec:
  replicas: {replicas}
  revisionHistoryLimit: 20
  selector:
    matchLabels: {{app: crash}}
  strategy:
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 1}}
  template:
    metadata:
      labels: {{app: crash}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: web
          image: {image}
          env: [{{name: STEP, value: "{step}"}}]
          ports: [{{containerPort: 8080}}]
"""


def manifest(step: int, images) -> str:
    # Every step is a new template (STEP), and the image flips too, so each commit is a
    # real rollout and gets its own revision.
    return MANIFEST.format(replicas=REPLICAS, step=step, image=images.hello_v2 if step % 2 else images.hello_v1)


def kill_and_restart(daemon: Daemon) -> None:
    assert daemon.proc is not None
    daemon.proc.kill()  # SIGKILL: no clean-up of any kind
    daemon.proc.wait(timeout=10)
    daemon.start()


def test_kill_9_during_rollouts_converges_without_duplicates_orphans_or_lost_history(tmp_path, podman_node, images):
    seed = int(os.environ.get("RECONCILER_CRASH_SEED") or time.time_ns() % 1_000_000)
    rng = random.Random(seed)
    why = f"(replay with RECONCILER_CRASH_SEED={seed})"
    podman_node.remove_everything()
    driver = PodmanDriver(url=podman_node.url)
    repo = tmp_path / "repo"
    commits = [init_repo(repo, {"crash.yaml": manifest(0, images)}, message="step 0")]
    daemon = Daemon(repo=repo, state_dir=tmp_path / "state", nodes={"node1": podman_node.url}).start()
    try:
        wait_for(lambda: daemon.json("status")["lastAppliedCommit"] == commits[0], timeout=90, what="step 0 healthy")
        kills = []
        for step in range(1, STEPS + 1):
            sha = commit(repo, {"crash.yaml": manifest(step, images)}, message=f"step {step}")
            commits.append(sha)
            # The kill's moment is the variable under test, so this sleep is the experiment, not a wait.
            delay = rng.uniform(0.0, 2.0)
            time.sleep(delay)
            kills.append(round(delay, 2))
            kill_and_restart(daemon)
            # The restarted daemon applies the head before the next commit lands, so every
            # commit is applied (none superseded) and the next one meets a rollout in flight.
            # "Applied" here is the apply itself (the health check has begun for it), not the
            # rollout's end: the next commit is meant to land on a rollout in flight.
            wait_for(lambda: (daemon.json("status").get("health") or {}).get("commit") == sha, timeout=60,
                     what=f"step {step} applied after the restart {why}")

        last_image = images.hello_v2 if STEPS % 2 else images.hello_v1

        def converged() -> list[dict] | None:
            d = daemon.json("get", "deployment", "crash")
            st = d.get("status") or {}
            if not (st.get("observedGeneration", 0) >= d["metadata"]["generation"] and st.get("replicas") == REPLICAS
                    and st.get("updatedReplicas") == REPLICAS and st.get("availableReplicas") == REPLICAS):
                return None
            pods = daemon.json("get", "pods", "-l", "app=crash")["items"]
            if len(pods) != REPLICAS or any(p["metadata"].get("deletionTimestamp") for p in pods):
                return None
            engine = driver.list_pods()
            if len(engine) != REPLICAS or not all(c.state == "running" for p in engine for c in p.containers):
                return None
            return pods

        pods = wait_for(converged, timeout=180, interval=0.5, what=f"convergence on step {STEPS} {why}")

        # Exactly the declared pods, on the last commit's template.
        for pod in pods:
            container = pod["spec"]["containers"][0]
            assert container["image"] == last_image, why
            assert {"name": "STEP", "value": str(STEPS)} in container["env"], why
            assert pod["metadata"]["annotations"]["reconciler.io/commit"] == commits[-1], why
            assert all(cs["restartCount"] == 0 for cs in pod["status"]["containerStatuses"]), why
        # No orphan or duplicate on the engine: its pods are the store's pods, uid for uid.
        engine = {(p.namespace, p.name, p.uid) for p in driver.list_pods()}
        store = {(p["metadata"]["namespace"], p["metadata"]["name"], p["metadata"]["uid"]) for p in pods}
        assert engine == store, f"engine and store disagree {why}: engine only {engine - store}, store only {store - engine}"
        # Old ReplicaSets are scaled to zero and own no pod.
        rss = daemon.json("get", "rs", "-l", "app=crash")["items"]
        live = [rs for rs in rss if rs["spec"]["replicas"]]
        assert len(live) == 1 and live[0]["metadata"]["annotations"]["reconciler.io/commit"] == commits[-1], why

        # History: one revision per commit, each tied to its own commit, none lost.
        revisions = daemon.json("rollout", "history", "deployment/crash")["revisions"]
        numbers = [r["revision"] for r in revisions]
        assert numbers == list(range(1, STEPS + 2)), f"revisions {numbers} {why} (kills at {kills})"
        assert [r["commit"] for r in revisions] == commits, f"revision commits differ from the commits {why}"
        assert [r["subject"] for r in revisions] == [f"step {i}" for i in range(STEPS + 1)], why

        # One more kill -9 on a converged system: the restart must not touch a single container.
        def fingerprint():
            return sorted((p.name, p.uid, tuple((c.container_id, c.started_at, c.state) for c in p.containers))
                          for p in driver.list_pods())

        before = fingerprint()
        kill_and_restart(daemon)
        wait_for(lambda: daemon.json("status")["lastSeenCommit"] == commits[-1], timeout=60,
                 what="the restarted daemon to see the head")
        end = time.monotonic() + 5  # several relist periods
        while time.monotonic() < end:
            assert fingerprint() == before, f"a restart after kill -9 touched running containers {why}"
            time.sleep(0.5)
        assert sorted(p["metadata"]["name"] for p in daemon.json("get", "pods", "-l", "app=crash")["items"]) == \
            sorted(p["metadata"]["name"] for p in pods), why
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.stop()
        podman_node.remove_everything()
