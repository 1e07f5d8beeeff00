"""The GitOps paths that need their own daemon: a file:// source polled every 300 s with `diff`
and `sync`, signed-commit verification, and a daemon fed malformed commits."""
from __future__ import annotations

import json
import random
import subprocess

import pytest

from tests.harness.daemon_harness import Daemon, commit, git, init_repo, wait_for

pytestmark = pytest.mark.podman

CM = """\
apiVersion: v1
kind: ConfigMap
metadata: {{name: {name}}}
data: {{value: "{value}"}}
"""


def test_remote_source_changes_only_on_sync_and_diff_tells_before(tmp_path, podman_node):
    upstream = tmp_path / "upstream"
    init_repo(upstream, {"cm.yaml": CM.format(name="settings", value="one")}, message="one")
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(upstream), str(bare)], check=True)
    daemon = Daemon(repo=f"file://{bare}", state_dir=tmp_path / "state", nodes={"node1": podman_node.url},
                    extra=("--interval", "300s")).start()
    try:
        wait_for(lambda: daemon.cli("get", "cm", "settings").returncode == 0, timeout=60, what="the first commit")
        assert daemon.cli("diff").returncode == 0
        commit(upstream, {"cm.yaml": CM.format(name="settings", value="two"),
                          "extra.yaml": CM.format(name="extra", value="x")}, message="two")
        git(upstream, "push", "-q", str(bare), "main")
        result = daemon.cli("diff", "-o", "json")
        assert result.returncode == 1, result.stdout + result.stderr
        changes = {(c["kind"], c["name"]): c["action"] for c in json.loads(result.stdout)["changes"]}
        assert changes == {("ConfigMap", "settings"): "update", ("ConfigMap", "extra"): "create"}
        assert "two" in daemon.cli("diff").stdout
        # Nothing changes until `reconciler sync` (the poll is 300 s away).
        assert daemon.json("get", "cm", "settings")["data"]["value"] == "one"
        assert daemon.cli("get", "cm", "extra").returncode != 0
        assert daemon.cli("sync").returncode == 0
        wait_for(lambda: daemon.json("get", "cm", "settings")["data"]["value"] == "two", timeout=30,
                 what="the sync to apply")
        assert daemon.cli("get", "cm", "extra").returncode == 0
        wait_for(lambda: daemon.cli("diff").returncode == 0, timeout=30, what="diff to report in sync")
    finally:
        daemon.stop()


def test_unsigned_commits_are_refused_when_verification_is_on(tmp_path, podman_node):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key), "-C", "ops@example.invalid"],
                   check=True)
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"ops@example.invalid {(tmp_path / 'id_ed25519.pub').read_text()}")
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for k, v in {"gpg.format": "ssh", "user.signingkey": str(key), "commit.gpgsign": "true",
                 "user.email": "ops@example.invalid", "user.name": "Ops"}.items():
        git(repo, "config", k, v)
    signed_first = commit(repo, {"cm.yaml": CM.format(name="gate", value="signed-1")}, message="signed")
    daemon = Daemon(repo=repo, state_dir=tmp_path / "state", nodes={"node1": podman_node.url},
                    config_extra={"source": {"verify": {"mode": "ssh", "allowedSigners": str(signers)}}}).start()
    try:
        wait_for(lambda: daemon.cli("get", "cm", "gate").returncode == 0, timeout=60, what="the signed commit")
        git(repo, "config", "commit.gpgsign", "false")
        unsigned = commit(repo, {"cm.yaml": CM.format(name="gate", value="unsigned")}, message="unsigned")
        wait_for(lambda: any(e["commit"] == unsigned and "not signed" in e["message"]
                             for e in daemon.json("status")["errors"]), timeout=30, what="the refusal in status")
        assert daemon.json("get", "cm", "gate")["data"]["value"] == "signed-1"
        git(repo, "config", "commit.gpgsign", "true")
        signed = commit(repo, {"cm.yaml": CM.format(name="gate", value="signed-2")}, message="signed again")
        wait_for(lambda: daemon.json("get", "cm", "gate")["data"]["value"] == "signed-2", timeout=30,
                 what="the next signed commit applied")
        assert signed != signed_first
        wait_for(lambda: daemon.json("status")["lastAppliedCommit"] == signed, timeout=30, what="the signed commit healthy")
    finally:
        daemon.stop()


def test_daemon_fed_malformed_commits_keeps_running(tmp_path, podman_node):
    repo = tmp_path / "repo"
    init_repo(repo, {"ok.yaml": CM.format(name="good", value="1")}, message="good")
    daemon = Daemon(repo=repo, state_dir=tmp_path / "state", nodes={"node1": podman_node.url}).start()
    rng = random.Random(20261125)
    try:
        wait_for(lambda: daemon.cli("get", "cm", "good").returncode == 0, timeout=60, what="the good commit")
        junk = [b"\xff\xfe\x00garbage", b"kind: [", b"- - -\n  : :", b"apiVersion: v1\nkind: Pod\nspec: 7\n",
                b"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: X_bad}\nspec: {replicas: -1}\n",
                b"&a [*a, *a]", b"!!python/object:os.system ['true']"]
        for i in range(12):
            payload = rng.choice(junk) + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
            (repo / f"junk{i % 3}.yaml").write_bytes(payload)
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "-m", f"junk {i}")
        head = git(repo, "rev-parse", "HEAD")
        wait_for(lambda: daemon.json("status")["lastAttemptedCommit"] == head, timeout=60, what="the junk applied")
        assert daemon.proc.poll() is None, "the daemon died"
        assert daemon.json("get", "cm", "good")["data"]["value"] == "1"
        assert daemon.json("status")["errors"]
        assert "Traceback" not in daemon.log_text()
    finally:
        daemon.stop()
