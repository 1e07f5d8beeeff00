"""The real daemon against a hostile repository (issue 13): its config names an fsmonitor
program and hooks, an old commit holds a 5,000-deep YAML file, and a pusher rewinds the
branch. `rollout undo` still works and runs none of the repository's programs, and with
`source.verify.requireDescendant` the rewound head is refused and `status` says why.

The Deployment has no replicas, so no container runs: what is tested is the daemon's Git
side, with a real daemon, real git and the real CLI.
"""
from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from tests.harness.daemon_harness import Daemon, git, init_repo, wait_for

pytestmark = pytest.mark.podman

WEB = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 0
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: app, image: "{image}"}}]
"""
V1, V2 = "registry.invalid/web:1", "registry.invalid/web:2"


def safe_git(repo: Path, *args: str) -> str:
    """The test's own git, which must not trip the trap it sets for the daemon."""
    return git(repo, "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", *args)


def safe_commit(repo: Path, files: dict[str, str | None], message: str) -> str:
    for name, text in files.items():
        if text is None:
            (repo / name).unlink()
        else:
            (repo / name).write_text(text)
    safe_git(repo, "add", "-A")
    safe_git(repo, "commit", "-q", "-m", message)
    return safe_git(repo, "rev-parse", "HEAD")


def image(daemon: Daemon) -> str:
    return daemon.json("get", "deploy", "web")["spec"]["template"]["spec"]["containers"][0]["image"]


def status(daemon: Daemon) -> dict[str, Any]:
    result: dict[str, Any] = daemon.json("status")
    return result


def test_undo_runs_no_repository_program_and_a_rewound_branch_is_refused(tmp_path: Path, podman_node) -> None:
    podman_node.remove_everything()
    repo = tmp_path / "repo"
    deep = "a: " + "[" * 5000 + "]" * 5000 + "\n"
    c1 = init_repo(repo, {"web.yaml": WEB.format(image=V1), "deep.yaml": deep}, message="v1, and a deep file")
    marker = tmp_path / "ran"
    trap = tmp_path / "trap.sh"
    trap.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {marker}\nexit 0\n")
    trap.chmod(trap.stat().st_mode | stat.S_IXUSR)
    safe_git(repo, "config", "core.fsmonitor", str(trap))
    for hook in ("reference-transaction", "post-index-change", "pre-commit", "post-commit"):
        (repo / ".git" / "hooks" / hook).write_text(f"#!/bin/sh\necho hook {hook} >> {marker}\nexit 0\n")
        (repo / ".git" / "hooks" / hook).chmod(0o755)

    daemon = Daemon(repo=repo, state_dir=tmp_path / "state", nodes={"node1": podman_node.url},
                    config_extra={"source": {"verify": {"requireDescendant": True}}}).start()
    try:
        wait_for(lambda: status(daemon).get("lastAttemptedCommit") == c1, timeout=60, what="c1 attempted")
        assert any("deep.yaml" in e.get("file", "") for e in status(daemon)["errors"])
        c2 = safe_commit(repo, {"web.yaml": WEB.format(image=V2), "deep.yaml": None}, "v2")
        wait_for(lambda: status(daemon).get("lastAppliedCommit") == c2, timeout=60, what="c2 applied")
        assert image(daemon) == V2

        # Back to revision 1: its commit holds deep.yaml, which the writer reads past.
        undo = daemon.cli("rollout", "undo", "deployment/web")
        assert undo.returncode == 0, undo.stdout + undo.stderr
        c3 = safe_git(repo, "rev-parse", "HEAD")
        assert c3 != c2 and safe_git(repo, "rev-parse", "HEAD^") == c2
        wait_for(lambda: status(daemon).get("lastAppliedCommit") == c3, timeout=60, what="the undo applied")
        assert image(daemon) == V1
        assert not marker.exists(), f"the repository's config made the daemon run: {marker.read_text()}"

        # A pusher rewinds the branch to the older commit c2.
        safe_git(repo, "reset", "-q", "--hard", c2)
        wait_for(lambda: status(daemon).get("lastAttemptedCommit") == c2, timeout=60, what="the rewind noticed")
        record = status(daemon)
        assert record["lastAppliedCommit"] == c3
        assert [e["message"] for e in record["errors"]] == [
            f"commit {c2[:12]} does not descend from the last applied commit {c3[:12]}: the branch was rewound "
            f"or force-pushed; source.verify.requireDescendant refuses it (to go back, commit the old state on "
            f"top, e.g. with rollout undo or git revert)."]
        shown = daemon.cli("status")
        assert "does not descend from the last applied commit" in shown.stdout
        assert image(daemon) == V1, "the rewound head must not be applied"
        assert not marker.exists(), f"the repository's config made the daemon run: {marker.read_text()}"
    finally:
        daemon.stop()
        podman_node.remove_everything()
