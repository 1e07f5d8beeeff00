"""The vertical slice on real parts: a Deployment committed to a real Git repository
runs on a real podman service from the local registry, rolls to a new image without
going over replicas+maxSurge active pods or under replicas-maxUnavailable, and rolls back on
`git revert`; restarting the daemon leaves every container alone."""
from __future__ import annotations

import ipaddress
import time

import pytest

from runtime.podman.driver import PodmanDriver
from tests.harness.daemon_harness import Daemon, commit, git, http_get, init_repo, wait_for

pytestmark = pytest.mark.podman

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
spec:
  replicas: 3
  selector:
    matchLabels: {{app: hello}}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata:
      labels: {{app: hello}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
        - name: web
          image: {image}
          ports:
            - containerPort: 8080
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, podman_node, images):
    podman_node.remove_everything()
    base = tmp_path_factory.mktemp("slice")
    repo = base / "repo"
    first = init_repo(repo, {"apps/hello.yaml": MANIFEST.format(image=images.hello_v1)}, message="hello v1")
    daemon = Daemon(repo=repo, state_dir=base / "state", nodes={"node1": podman_node.url}).start()
    state = {"daemon": daemon, "repo": repo, "commits": [first], "driver": PodmanDriver(url=podman_node.url),
             "images": images, "pod_cidr": podman_node.pod_cidr}
    yield state
    if daemon.proc and daemon.proc.poll() is None:
        daemon.stop()
    podman_node.remove_everything()


def pods(daemon: Daemon) -> list[dict]:
    return daemon.json("get", "pods", "-l", "app=hello")["items"]


def ready(pod: dict) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def serving(daemon: Daemon, version: str, count: int = 3) -> list[dict]:
    current = [p for p in pods(daemon) if ready(p)]
    if len(current) != count or len(pods(daemon)) != count:
        return []
    for pod in current:
        if version not in http_get(f"http://{pod['status']['podIP']}:8080/"):
            return []
    return current


def test_commit_runs_three_ready_pods_that_answer(cluster):
    daemon = cluster["daemon"]
    running = wait_for(lambda: serving(daemon, "v1"), timeout=120, what="3 ready v1 pods answering HTTP")
    cidr = ipaddress.ip_network(cluster["pod_cidr"])  # the node's pod CIDR: its bridge's subnet
    assert {p["spec"]["nodeName"] for p in running} == {"node1"}
    assert all(p["status"]["phase"] == "Running" for p in running)
    ips = {p["status"]["podIP"] for p in running}
    assert len(ips) == 3 and all(ipaddress.ip_address(ip) in cidr for ip in ips)
    assert all(p["metadata"]["labels"].get("pod-template-hash") for p in running)
    assert all(p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet" for p in running)
    # lastAppliedCommit follows the health check (the Deployment rolled out), not just the apply.
    status = wait_for(lambda: (s := daemon.json("status"))["lastAppliedCommit"] == cluster["commits"][0] and s,
                      timeout=30, what="the first commit healthy")
    assert status["health"]["state"] == "Healthy" and status["nodes"] == [{"name": "node1", "ready": True}]


def test_image_change_rolls_within_surge_and_availability(cluster):
    daemon, repo = cluster["daemon"], cluster["repo"]
    second = commit(repo, {"apps/hello.yaml": MANIFEST.format(image=cluster["images"].hello_v2)}, message="hello v2")
    cluster["commits"].append(second)
    max_active, min_ready, samples = 0, 10, 0
    held_back = 0  # samples where v2 was applied to the store but lastAppliedCommit still named v1
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        # In-process API reads: a CLI subprocess per read would sample a 3-pod rollout too rarely.
        current = daemon.api("/api/v1/namespaces/default/pods?labelSelector=app%3Dhello")["items"]
        n_ready = sum(1 for p in current if ready(p))
        # Kubernetes' default podReplacementPolicy (TerminationStarted): pods marked for deletion
        # drain beside the next new one, so the bound is on active pods (not terminating).
        active = sum(1 for p in current if not p["metadata"].get("deletionTimestamp"))
        max_active, min_ready, samples = max(max_active, active), min(min_ready, n_ready), samples + 1
        status = daemon.api("/status")  # read before the Deployment: completion only moves forward
        d = daemon.api("/apis/apps/v1/namespaces/default/deployments/hello")
        st = d.get("status", {})
        complete = (d["metadata"]["generation"] <= st.get("observedGeneration", 0) and st.get("updatedReplicas") == 3
                    and st.get("replicas") == 3 and st.get("availableReplicas") == 3)
        if status["lastAppliedCommit"] == second:
            assert complete, f"lastAppliedCommit moved to v2 before its rollout completed: {st}"
        elif (status.get("health") or {}).get("commit") == second and not complete:
            assert status["lastAppliedCommit"] == cluster["commits"][0], status
            held_back += 1
        if (complete and all("hello:v2" in p["spec"]["containers"][0]["image"] for p in current)
                and len(current) == 3):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the rollout to v2 did not complete within 180 s")
    assert held_back >= 1, "never saw the rollout in progress with lastAppliedCommit held back"
    wait_for(lambda: daemon.json("status")["lastAppliedCommit"] == second, timeout=30, what="v2 healthy")
    assert samples >= 5, "the rollout was not sampled enough to mean anything"
    assert max_active <= 4, f"{max_active} active pods: more than replicas + maxSurge"
    assert min_ready >= 3, f"only {min_ready} ready pods at some point: below replicas - maxUnavailable"
    wait_for(lambda: serving(daemon, "v2"), timeout=60, what="3 ready v2 pods answering HTTP")
    result = daemon.cli("rollout", "status", "deployment/hello", "--timeout", "60s")
    assert result.returncode == 0 and "successfully rolled out" in result.stdout


def test_history_ties_revisions_to_commits(cluster):
    history = cluster["daemon"].json("rollout", "history", "deployment/hello")
    revs = {r["revision"]: r for r in history["revisions"]}
    assert revs[1]["commit"] == cluster["commits"][0] and revs[2]["commit"] == cluster["commits"][1]
    assert revs[1]["subject"] == "hello v1" and "localhost:5000/hello:v2" in revs[2]["images"]


def test_git_revert_scales_revision_1_back_up_as_revision_3(cluster):
    daemon, repo = cluster["daemon"], cluster["repo"]
    rs_v1 = [rs for rs in daemon.json("get", "rs")["items"]
             if rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"]
    assert len(rs_v1) == 1
    name = rs_v1[0]["metadata"]["name"]
    git(repo, "revert", "--no-edit", "HEAD")
    third = git(repo, "rev-parse", "HEAD")
    cluster["commits"].append(third)

    def reverted():
        rs = daemon.json("get", "rs", name)
        ann = rs["metadata"]["annotations"]
        return (ann["deployment.kubernetes.io/revision"] == "3" and ann["reconciler.io/commit"] == third
                and rs["spec"]["replicas"] == 3 and rs.get("status", {}).get("availableReplicas") == 3)

    wait_for(reverted, timeout=180, what=f"ReplicaSet {name} back at 3 replicas as revision 3")
    wait_for(lambda: serving(daemon, "v1"), timeout=60, what="3 ready v1 pods answering HTTP again")
    revs = {r["revision"]: r["commit"] for r in daemon.json("rollout", "history", "deployment/hello")["revisions"]}
    assert revs[3] == third


def test_daemon_restart_leaves_containers_untouched(cluster):
    daemon, driver = cluster["daemon"], cluster["driver"]

    def fingerprint():
        return sorted((p.name, p.uid, tuple((c.container_id, c.started_at, c.state) for c in p.containers))
                      for p in driver.list_pods())

    before = fingerprint()
    names_before = sorted(p["metadata"]["name"] for p in pods(daemon))
    assert daemon.stop() == 0
    assert fingerprint() == before, "stopping the daemon touched the containers"
    daemon.start()
    wait_for(lambda: daemon.json("status")["lastSeenCommit"] == cluster["commits"][-1], timeout=60,
             what="the restarted daemon to see the head commit")
    # Watch a window of several relist periods: nothing may be restarted or replaced.
    end = time.monotonic() + 6
    while time.monotonic() < end:
        assert fingerprint() == before, "the restarted daemon touched the containers"
        time.sleep(0.5)
    assert sorted(p["metadata"]["name"] for p in pods(daemon)) == names_before
