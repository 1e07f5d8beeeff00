"""GitOps semantics on real parts: bad commits fail only what they touch, prune,
drift healing, rollback as a commit, auto-rollback, and supersede."""
from __future__ import annotations

import json
import time

import pytest

from runtime.podman.driver import PodmanDriver
from tests.harness.daemon_harness import Daemon, commit, git, init_repo, wait_for

pytestmark = pytest.mark.podman

APP = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  annotations: {{reconciler.io/auto-rollback: "{auto}"}}
spec:
  replicas: {replicas}
  progressDeadlineSeconds: {pds}
  minReadySeconds: {min_ready}
  selector: {{matchLabels: {{app: {name}}}}}
  strategy: {{type: RollingUpdate, rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers: [{{name: app, image: "{image}", ports: [{{containerPort: 8080}}]}}]
"""


def app(name: str, image: str, *, replicas: int = 2, pds: int = 600, auto: bool = False, min_ready: int = 0) -> str:
    return APP.format(name=name, image=image, replicas=replicas, pds=pds, auto=str(auto).lower(), min_ready=min_ready)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, podman_node, images):
    podman_node.remove_everything()
    base = tmp_path_factory.mktemp("gitops")
    repo = base / "repo"
    first = init_repo(repo, {"a.yaml": app("alpha", images.hello_v1)}, message="alpha v1")
    daemon = Daemon(repo=repo, state_dir=base / "state", nodes={"node1": podman_node.url}).start()
    yield {"daemon": daemon, "repo": repo, "node": podman_node, "images": images, "first": first,
           "driver": PodmanDriver(url=podman_node.url)}
    if daemon.proc and daemon.proc.poll() is None:
        daemon.stop()
    podman_node.remove_everything()


def running(daemon: Daemon, app_name: str, image: str | None = None) -> list[dict]:
    pods = [p for p in daemon.json("get", "pods", "-l", f"app={app_name}")["items"]
            if not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]
    if image is not None:
        pods = [p for p in pods if p["spec"]["containers"][0]["image"] == image]
    return pods


def converged(daemon: Daemon, app_name: str, image: str, count: int) -> bool:
    all_pods = daemon.json("get", "pods", "-l", f"app={app_name}")["items"]
    return len(all_pods) == count and len(running(daemon, app_name, image)) == count


def test_bad_value_fails_only_its_object_and_the_fix_clears_it(cluster):
    daemon, repo, images = cluster["daemon"], cluster["repo"], cluster["images"]
    wait_for(lambda: converged(daemon, "alpha", images.hello_v1, 2), timeout=90, what="alpha running")
    alpha_before = sorted(p["metadata"]["uid"] for p in running(daemon, "alpha"))
    broken = app("alpha", images.hello_v2).replace("replicas: 2", "replicas: lots")
    sha = commit(repo, {"a.yaml": broken, "b.yaml": app("beta", images.hello_v1, replicas=1)}, message="bad alpha, new beta")
    wait_for(lambda: converged(daemon, "beta", images.hello_v1, 1), timeout=90, what="beta running despite alpha's error")
    status = daemon.json("status")
    assert status["lastSeenCommit"] == sha
    assert any(e["file"] == "a.yaml" and e["commit"] == sha and e["line"] > 1 for e in status["errors"]), status["errors"]
    assert sorted(p["metadata"]["uid"] for p in running(daemon, "alpha", images.hello_v1)) == alpha_before
    states = {(x["kind"], x["name"]): x["state"] for x in status["objects"]}
    assert states[("Deployment", "alpha")] == "Failed" and states[("Deployment", "beta")] == "Synced"
    # A YAML syntax error disturbs nothing either.
    sha2 = commit(repo, {"a.yaml": "kind: Deployment\nmetadata: {name: alpha\n"}, message="broken yaml")
    wait_for(lambda: daemon.json("status")["lastSeenCommit"] == sha2, timeout=30, what="the broken commit seen")
    errs = daemon.json("status")["errors"]
    assert any(e["file"] == "a.yaml" and "YAML" in e["message"] for e in errs), errs
    states = {(x["kind"], x["name"]): x["state"] for x in daemon.json("status")["objects"]}
    assert states[("Deployment", "alpha")] == "OutOfSync" and states[("Deployment", "beta")] == "Synced"
    assert sorted(p["metadata"]["uid"] for p in running(daemon, "alpha", images.hello_v1)) == alpha_before
    fixed = commit(repo, {"a.yaml": app("alpha", images.hello_v1)}, message="fix alpha")
    wait_for(lambda: (s := daemon.json("status"))["lastAppliedCommit"] == fixed and not s["errors"], timeout=30,
             what="the fix to clear the errors")
    assert sorted(p["metadata"]["uid"] for p in running(daemon, "alpha", images.hello_v1)) == alpha_before


def test_removed_manifest_is_pruned(cluster):
    daemon, repo = cluster["daemon"], cluster["repo"]
    wait_for(lambda: running(daemon, "beta"), timeout=60, what="beta")
    git(repo, "rm", "-q", "b.yaml")
    git(repo, "commit", "-q", "-m", "drop beta")
    wait_for(lambda: not daemon.json("get", "pods", "-l", "app=beta")["items"]
             and not [p for p in cluster["driver"].list_pods() if p.name.startswith("beta-")],
             timeout=60, what="beta's pods pruned from the store and podman")
    assert daemon.cli("get", "deployment", "beta").returncode != 0


def test_drift_is_healed(cluster):
    daemon, node, driver, images = cluster["daemon"], cluster["node"], cluster["driver"], cluster["images"]
    wait_for(lambda: converged(daemon, "alpha", images.hello_v1, 2), timeout=60, what="alpha")
    first, second = [p["metadata"]["name"] for p in running(daemon, "alpha")]
    assert node.cli("rm", "-f", "-t", "0", f"default_{first}_app").returncode == 0
    stopped = node.cli("stop", "-t", "1", f"default_{second}_app")
    # podman's stop cleans up after the exit; if the daemon (told by podman's events) has
    # started the container again by then, podman fails that clean-up: the stop did happen.
    assert stopped.returncode == 0 or "refusing to clean up" in stopped.stderr, stopped.stderr
    node.cli("pod", "create", "--label", "reconciler.io/managed=true", "--label", "reconciler.io/pod-namespace=default",
             "--label", "reconciler.io/pod-name=stray", "--label", "reconciler.io/pod-uid=nobody", "--name", "default_stray")
    # A lone container with our label (made by hand, in no pod) goes; one without our label stays.
    image = cluster["images"].hello_v1
    assert node.cli("run", "-d", "--name", "lone", "--label", "reconciler.io/managed=true", image).returncode == 0
    assert node.cli("run", "-d", "--name", "bystander", "--label", "app=alpha", image).returncode == 0

    def healed():
        states = {p.name: p for p in driver.list_pods()}
        return ("stray" not in states and node.cli("container", "exists", "lone").returncode != 0 and all(
            n in states and [c.state for c in states[n].containers] == ["running"] for n in (first, second)))

    wait_for(healed, timeout=30, what="both containers running again, the stray pod and the lone container gone")
    assert node.cli("pod", "exists", "default_stray").returncode != 0
    assert node.cli("inspect", "--format", "{{.State.Status}}", "bystander").stdout.strip() == "running"
    events = daemon.json("get", "events")["items"]
    assert any(e.get("reason") == "RemovedStrayContainer" and "lone" in e.get("message", "") for e in events), events
    node.cli("rm", "-f", "-t", "0", "bystander")


def test_rollout_undo_is_a_commit_on_the_branch(cluster):
    daemon, repo, images = cluster["daemon"], cluster["repo"], cluster["images"]
    commit(repo, {"a.yaml": app("alpha", images.hello_v2)}, message="alpha v2")
    wait_for(lambda: converged(daemon, "alpha", images.hello_v2, 2), timeout=90, what="alpha on v2")
    old_head = git(repo, "rev-parse", "HEAD")
    result = daemon.cli("rollout", "undo", "deployment/alpha")
    assert result.returncode == 0, result.stderr
    new_head = git(repo, "rev-parse", "HEAD")
    assert new_head != old_head and new_head in result.stdout
    assert git(repo, "rev-parse", "HEAD^") == old_head
    wait_for(lambda: converged(daemon, "alpha", images.hello_v1, 2), timeout=90, what="alpha back on v1")
    assert git(repo, "status", "--porcelain") == ""


def test_auto_rollback_returns_to_the_previous_pods_and_never_retries(cluster):
    daemon, repo, images = cluster["daemon"], cluster["repo"], cluster["images"]
    commit(repo, {"c.yaml": app("gamma", images.hello_v1, replicas=2, pds=15, auto=True, min_ready=3)}, message="gamma v1")
    wait_for(lambda: converged(daemon, "gamma", images.hello_v1, 2), timeout=90, what="gamma on v1")
    done = daemon.cli("rollout", "status", "deployment/gamma", "--timeout", "60s")
    assert done.returncode == 0, done.stdout + done.stderr  # v1 completed: the revision to return to
    v1_uids = sorted(p["metadata"]["uid"] for p in running(daemon, "gamma"))
    bad = commit(repo, {"c.yaml": app("gamma", images.crash, replicas=2, pds=15, auto=True, min_ready=3)}, message="gamma crash")

    def rolled_back():
        d = daemon.json("get", "deployment", "gamma")
        # The rollback's own mark first: before the bad commit is applied, v1 also looks "converged".
        return (d["metadata"].get("annotations", {}).get("reconciler.io/rolled-back-from") == bad
                and d["spec"]["template"]["spec"]["containers"][0]["image"] == images.hello_v1
                and converged(daemon, "gamma", images.hello_v1, 2))

    wait_for(rolled_back, timeout=90, what="gamma rolled back to v1")
    assert sorted(p["metadata"]["uid"] for p in running(daemon, "gamma")) == v1_uids, "the v1 pods were kept"
    errors = daemon.json("status")["errors"]
    assert any(e["commit"] == bad and "rolled back" in e["message"] for e in errors), errors
    # Not retried: the resync keeps it rolled back while Git still says crash.
    daemon.cli("sync")
    end = time.monotonic() + 5
    while time.monotonic() < end:
        assert not [p for p in daemon.json("get", "pods", "-l", "app=gamma")["items"]
                    if p["spec"]["containers"][0]["image"] == images.crash]
        time.sleep(0.5)
    good = commit(repo, {"c.yaml": app("gamma", images.hello_v2, replicas=2, pds=15, auto=True, min_ready=3)}, message="gamma v2")
    wait_for(lambda: converged(daemon, "gamma", images.hello_v2, 2), timeout=90, what="the next commit rolling normally")
    wait_for(lambda: daemon.json("status")["lastAppliedCommit"] == good, timeout=60, what="the next commit healthy")


def test_a_fix_supersedes_a_stuck_rollout_at_once(cluster):
    daemon, repo, images = cluster["daemon"], cluster["repo"], cluster["images"]
    commit(repo, {"a.yaml": app("alpha", images.crash, pds=600)}, message="alpha stuck")
    wait_for(lambda: any(cs.get("restartCount", 0) >= 1 for p in daemon.json("get", "pods", "-l", "app=alpha")["items"]
                         for cs in p["status"].get("containerStatuses", [])), timeout=60, what="alpha stuck")
    fixed_at = time.monotonic()
    commit(repo, {"a.yaml": app("alpha", images.hello_v2, pds=600)}, message="alpha fix")
    wait_for(lambda: converged(daemon, "alpha", images.hello_v2, 2), timeout=60, what="the fix rolled out")
    assert time.monotonic() - fixed_at < 60


def test_diff_shows_nothing_when_in_sync(cluster):
    daemon = cluster["daemon"]
    result = daemon.cli("diff", "-o", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["changes"] == []
