"""The real daemon with SSH signature verification on does not refuse its own rollback:
`reconciler rollout undo` is applied with a signing key (the commit is signed, and
`git verify-commit` agrees) and without one (the commit is exempted as the daemon's
own), while an unsigned commit from anyone else is still refused, and the daemon will
not build a commit on top of it."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_gitops import app
from tests.harness.daemon_harness import Daemon, git, init_repo, wait_for

pytestmark = pytest.mark.podman


def _key(path: Path, comment: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True,
                   capture_output=True)
    return path


def signed_commit(repo: Path, files: dict[str, str], *, message: str, key: Path) -> str:
    """A commit signed the way an operator signs: settings on the command line only, so the
    repository's config signs nothing by itself (the daemon's commits get nothing from it)."""
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "commit", "-q", "-S", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def template_image(daemon: Daemon) -> str:
    return daemon.json("get", "deploy", "web")["spec"]["template"]["spec"]["containers"][0]["image"]


@pytest.mark.parametrize("with_signing_key", [True, False], ids=["signing-key", "own-commit-exemption"])
def test_rollout_undo_is_applied_under_verification_and_unsigned_commits_are_not(
        with_signing_key: bool, tmp_path: Path, podman_node, images) -> None:
    podman_node.remove_everything()
    ops_key = _key(tmp_path / "ops_key", "ops@example.invalid")
    daemon_key = _key(tmp_path / "daemon_key", "reconciler@example.invalid")
    allowed = tmp_path / "allowed_signers"
    lines = [f'ops@example.invalid namespaces="git" {(tmp_path / "ops_key.pub").read_text().strip()}']
    if with_signing_key:
        lines.append(f'reconciler@example.invalid namespaces="git" {(tmp_path / "daemon_key.pub").read_text().strip()}')
    allowed.write_text("\n".join(lines) + "\n")
    verify: dict[str, str] = {"mode": "ssh", "allowedSigners": str(allowed)}
    if with_signing_key:
        verify["signingKey"] = str(daemon_key)

    repo = tmp_path / "repo"
    init_repo(repo, {"README.md": "manifests\n"}, message="empty")  # unsigned, but never the head the daemon sees
    v1 = signed_commit(repo, {"web.yaml": app("web", images.hello_v1, replicas=1)}, message="web v1", key=ops_key)
    daemon = Daemon(repo=repo, state_dir=tmp_path / "state", nodes={"node1": podman_node.url},
                    config_extra={"source": {"verify": verify}}).start()
    try:
        wait_for(lambda: template_image(daemon) == images.hello_v1, timeout=60, what="web v1 applied")
        v2 = signed_commit(repo, {"web.yaml": app("web", images.hello_v2, replicas=1)}, message="web v2", key=ops_key)
        wait_for(lambda: template_image(daemon) == images.hello_v2, timeout=60, what="web v2 applied")
        wait_for(lambda: [r["commit"] for r in daemon.json("rollout", "history", "deployment/web")["revisions"]]
                 == [v1, v2], timeout=60, what="two revisions in the rollout history")

        undo = daemon.cli("rollout", "undo", "deployment/web")
        assert undo.returncode == 0, undo.stdout + undo.stderr
        undo_sha = git(repo, "rev-parse", "HEAD")
        assert undo_sha != v2 and undo_sha in undo.stdout and git(repo, "rev-parse", "HEAD^") == v2
        wait_for(lambda: daemon.json("status")["lastAttemptedCommit"] == undo_sha, timeout=30,
                 what="the undo commit taken up")
        wait_for(lambda: template_image(daemon) == images.hello_v1, timeout=60, what="the undo applied")
        assert not [e for e in daemon.json("status")["errors"] if e["commit"] == undo_sha]
        assert git(repo, "status", "--porcelain") == ""
        verified = subprocess.run(["git", "-C", str(repo), "-c", f"gpg.ssh.allowedSignersFile={allowed}",
                                   "verify-commit", undo_sha], capture_output=True, text=True)
        exempted = [line for line in daemon.log_text().splitlines()
                    if "commit written by the daemon itself" in line and undo_sha in line]
        if with_signing_key:
            assert verified.returncode == 0, verified.stderr
            assert 'Good "git" signature for reconciler@example.invalid' in verified.stderr
            assert not exempted
        else:
            assert verified.returncode != 0  # really unsigned: it got through as the daemon's own
            assert exempted, daemon.log_text()[-3000:]

        # Someone else's unsigned commit is still refused, and changes nothing.
        (repo / "web.yaml").write_text(app("web", images.hello_v2, replicas=1))
        git(repo, "commit", "-q", "-am", "web v2, unsigned")
        unsigned = git(repo, "rev-parse", "HEAD")
        wait_for(lambda: any(e["commit"] == unsigned and "is not signed by a trusted key" in e["message"]
                             for e in daemon.json("status")["errors"]), timeout=30, what="the unsigned commit refused")
        assert template_image(daemon) == images.hello_v1
        # Nor will the daemon carry it past verification inside a commit of its own.
        restart = daemon.cli("rollout", "restart", "deployment/web")
        assert restart.returncode != 0
        assert f"commit {unsigned[:12]} is not signed by a trusted key" in restart.stderr
        assert "so the daemon will not build a commit on it" in restart.stderr
        assert "Traceback" not in restart.stderr
        assert git(repo, "rev-parse", "HEAD") == unsigned
        assert template_image(daemon) == images.hello_v1
        assert daemon.proc is not None and daemon.proc.poll() is None
    finally:
        daemon.stop()
        podman_node.remove_everything()
