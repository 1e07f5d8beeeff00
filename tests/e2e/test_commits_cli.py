"""The commit record and the CI verbs on a real daemon, real Git and real podman:
`get commits`, `wait`, `sync --wait`, `suspend`/`resume` and `diff --revision`.

One daemon for the module; the tests run in order and each starts from the state the
one before left (a Deployment `web` that is healthy on some commit).
"""
from __future__ import annotations

import json

import pytest

from tests.harness.daemon_harness import Daemon, commit, init_repo, wait_for

pytestmark = pytest.mark.podman

WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations: {{reconciler.io/auto-rollback: "true"}}
spec:
  replicas: 1
  progressDeadlineSeconds: {pds}
  selector: {{matchLabels: {{app: web}}}}
  strategy: {{type: RollingUpdate, rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: app
        image: "{image}"
        ports: [{{containerPort: 8080}}]
        env: [{{name: COLOUR, value: "{colour}"}}]
"""


def web(image: str, *, colour: str = "red", pds: int = 12) -> str:
    return WEB.format(image=image, colour=colour, pds=pds)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, podman_node, images):
    podman_node.remove_everything()
    base = tmp_path_factory.mktemp("commits")
    repo = base / "repo"
    first = init_repo(repo, {"web.yaml": web(images.hello_v1)}, message="web v1")
    daemon = Daemon(repo=repo, state_dir=base / "state", nodes={"node1": podman_node.url}).start()
    yield {"daemon": daemon, "repo": repo, "images": images, "first": first}
    if daemon.proc and daemon.proc.poll() is None:
        daemon.stop()
    podman_node.remove_everything()


def commits(daemon: Daemon) -> dict[str, dict]:
    return {c["sha"]: c for c in daemon.json("get", "commits")["items"]}


def test_a_good_commit_waits_to_healthy_and_shows_its_objects(cluster):
    daemon, repo, images = cluster["daemon"], cluster["repo"], cluster["images"]
    first = daemon.cli("wait", "--commit", cluster["first"], "--timeout", "120s", timeout=150)
    assert first.returncode == 0, first.stdout + first.stderr
    sha = commit(repo, {"web.yaml": web(images.hello_v2)}, message="web v2")
    done = daemon.cli("wait", "--commit", sha[:10], "--timeout", "120s", timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == f'commit {sha[:12]} "web v2" is applied and healthy.\n'
    record = commits(daemon)
    assert record[sha]["state"] == "Healthy" and record[sha]["subject"] == "web v2"
    assert {"kind": "Deployment", "namespace": "default", "name": "web", "action": "update"} in record[sha]["objects"]
    assert record[cluster["first"]]["state"] == "Healthy"
    assert {"kind": "Deployment", "namespace": "default", "name": "web", "action": "create"} in \
        record[cluster["first"]]["objects"]
    listing = daemon.json("get", "commits")["items"]
    assert [c["sha"] for c in listing][:2] == [sha, cluster["first"]], "newest first"
    assert set(listing[0]) == {"sha", "subject", "author", "time", "state", "objects", "message"}
    table = daemon.cli("get", "commits")
    assert table.returncode == 0 and table.stdout.split("\n")[0].split() == ["SHA", "STATE", "AGE", "SUBJECT"]
    assert table.stdout.split("\n")[1].split()[:2] == [sha[:12], "Healthy"]


def test_a_bad_image_is_rolled_back_and_wait_says_so(cluster):
    daemon, repo = cluster["daemon"], cluster["repo"]
    bad = commit(repo, {"web.yaml": web("localhost:5000/hello:no-such-tag")}, message="web broken image")
    result = daemon.cli("wait", "--commit", bad, "--timeout", "150s", timeout=180)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith(f'error: commit {bad[:12]} "web broken image" ') and \
        result.stderr.count("\n") == 1, result.stderr
    wait_for(lambda: commits(daemon)[bad]["state"] == "RolledBack", timeout=90, what="the commit RolledBack")
    assert "rolled back" in commits(daemon)[bad]["message"]


def test_two_commits_in_quick_succession_the_first_is_superseded_or_skipped(cluster):
    daemon, repo, images = cluster["daemon"], cluster["repo"], cluster["images"]
    a = commit(repo, {"web.yaml": web(images.hello_v1, colour="green")}, message="web green")
    b = commit(repo, {"web.yaml": web(images.hello_v1, colour="blue")}, message="web blue")
    done = daemon.cli("wait", "--commit", b, "--timeout", "120s", timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr
    assert commits(daemon)[a]["state"] in ("Superseded", "Skipped"), commits(daemon)[a]
    waited = daemon.cli("wait", "--commit", a, "--timeout", "5s")
    assert waited.returncode == 1 and ("superseded" in waited.stderr or "skipped" in waited.stderr), waited.stderr


def test_suspend_keeps_a_new_commit_out_until_resume(cluster):
    daemon, repo, images = cluster["daemon"], cluster["repo"], cluster["images"]
    applied = daemon.json("status")["lastAppliedCommit"]
    said = daemon.cli("suspend", "--reason", "release freeze")
    assert said.returncode == 0 and "suspended" in said.stdout, said.stdout + said.stderr
    status = daemon.json("status")
    assert status["suspended"] is True and status["suspendReason"] == "release freeze"
    text = daemon.cli("status").stdout
    assert "Suspended:" in text and "release freeze" in text
    held = commit(repo, {"web.yaml": web(images.hello_v2, colour="blue")}, message="web v2 during the freeze")
    wait_for(lambda: commits(daemon).get(held, {}).get("state") == "Skipped", timeout=30,
             what="the new commit seen and skipped")
    assert daemon.json("status")["lastAppliedCommit"] == applied
    image = daemon.json("get", "deployment", "web")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == images.hello_v1, "not applied while suspended"
    skipped = daemon.cli("wait", "--commit", held, "--timeout", "5s")
    assert skipped.returncode == 1 and "suspended" in skipped.stderr, skipped.stderr
    resumed = daemon.cli("resume")
    assert resumed.returncode == 0 and held[:12] in resumed.stdout, resumed.stdout + resumed.stderr
    assert daemon.json("status")["suspended"] is False
    done = daemon.cli("sync", "--wait", "--timeout", "120s", timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"commit {held[:12]}" in done.stdout and commits(daemon)[held]["state"] == "Healthy"


def test_wait_for_an_unknown_commit_is_one_sentence(cluster):
    result = cluster["daemon"].cli("wait", "--commit", "deadbeef", "--timeout", "10s")
    assert result.returncode == 1
    assert result.stderr.startswith("error: commit deadbeef is not in ") and result.stderr.count("\n") == 1, \
        result.stderr
    assert "Traceback" not in result.stderr


def test_diff_plans_another_revision_against_what_runs(cluster):
    daemon = cluster["daemon"]
    same = daemon.cli("diff", "--revision", "main", "-o", "json")
    assert same.returncode == 0 and json.loads(same.stdout)["changes"] == [], same.stdout + same.stderr
    older = daemon.cli("diff", "--revision", cluster["first"][:10], "-o", "json")
    assert older.returncode == 1, older.stderr
    changes = json.loads(older.stdout)["changes"]
    assert [(c["kind"], c["name"], c["action"]) for c in changes] == [("Deployment", "web", "update")]
    assert "hello:v1" in changes[0]["diff"] and "hello:v2" in changes[0]["diff"]
    text = daemon.cli("diff", "--revision", "main~1")
    assert text.returncode == 1 and "update Deployment default/web" in text.stdout
    missing = daemon.cli("diff", "--revision", "no-such-branch")
    assert missing.returncode == 1 and "names no commit" in missing.stderr and "Traceback" not in missing.stderr
