"""A commit's diff on the Commits page: what Git holds, Secrets left out."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from reconciler.dashboard.diffs import commit_diff

SECRET = "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: %s}\n"
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: %s}\n"


@dataclass
class Source:
    git_dir: Path
    path: str = "."


def git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@x.invalid", "GIT_COMMITTER_NAME": "T",
           "GIT_COMMITTER_EMAIL": "t@x.invalid", "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env,
                          check=True).stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def test_diff_shows_changes_and_hides_secrets(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    first = commit(repo, {"app/cm.yaml": CM % "blue", "app/secret.yaml": SECRET % "hunter2"}, "first")
    second = commit(repo, {"app/cm.yaml": CM % "green", "app/secret.yaml": SECRET % "correct-horse"}, "second")
    source = Source(git_dir=repo / ".git")
    diff = commit_diff(source, second)
    assert diff is not None
    assert "-data: {color: blue}" in diff and "+data: {color: green}" in diff
    assert "correct-horse" not in diff and "hunter2" not in diff
    assert "this file holds a Secret" in diff
    root = commit_diff(source, first)  # a first commit has no parent
    assert root is not None and "+data: {color: blue}" in root and "hunter2" not in root
    # Removing a Secret: the file holds none at the commit, but did before.
    git(repo, "rm", "-q", "app/secret.yaml")
    git(repo, "commit", "-q", "-m", "drop")
    gone = commit_diff(source, git(repo, "rev-parse", "HEAD"))
    assert gone is not None and "correct-horse" not in gone


def test_diff_of_a_path_and_of_nonsense(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    sha = commit(repo, {"deploy/cm.yaml": CM % "a", "other/cm.yaml": CM % "zzz-elsewhere"}, "two dirs")
    diff = commit_diff(Source(git_dir=repo / ".git", path="deploy"), sha)
    assert diff is not None and "deploy/cm.yaml" in diff and "zzz-elsewhere" not in diff
    assert commit_diff(Source(git_dir=repo / ".git"), "--output=/tmp/x") is None  # never an option to git
    assert commit_diff(Source(git_dir=repo / ".git"), "0" * 40) is None  # unknown commit
