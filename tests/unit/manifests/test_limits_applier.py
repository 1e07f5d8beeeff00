"""limits through the applier, on a real Git repository and a real store: a commit over
``limits.objects`` is refused whole (nothing written, nothing pruned, not even the objects
of a file it deletes), and one over ``replicasPerObject`` keeps that object's last good version."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from reconciler.core.clock import ManualClock
from reconciler.gitops.applier import Applier
from reconciler.gitops.source import GitSource
from reconciler.manifests.limits import Limits
from reconciler.store.store import Store


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env,
                          check=True).stdout.strip()


def commit(repo: Path, files: dict[str, str | None]) -> str:
    for name, text in files.items():
        if text is None:
            (repo / name).unlink()
        else:
            (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "change")
    return git(repo, "rev-parse", "HEAD")


def config_map(name: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata: {{k: v}}\n"


def deployment(replicas: int) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: app
          image: registry.example/app:1
"""


def setup(tmp_path: Path, limits: Limits) -> tuple[Path, Store, Applier]:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    store = Store(tmp_path / "store.db")
    applier = Applier(store=store, source=GitSource(repo=str(repo), branch="main"), clock=ManualClock(),
                      limits=limits)
    return repo, store, applier


def names(store: Store) -> list[str]:
    return [c["metadata"]["name"] for c in store.list("ConfigMap")]


def test_a_commit_over_the_object_limit_changes_nothing(tmp_path: Path) -> None:
    repo, store, applier = setup(tmp_path, Limits(objects=2))
    first = commit(repo, {"a.yaml": config_map("a"), "b.yaml": config_map("b")})
    assert applier.apply(first).ok
    assert names(store) == ["a", "b"]

    # b.yaml goes and a.yaml grows to three objects: over the limit.
    big = commit(repo, {"a.yaml": config_map("a") + "---\n" + config_map("c") + "---\n" + config_map("d"),
                        "b.yaml": None})
    outcome = applier.apply(big)
    assert not outcome.ok and outcome.changes == ()
    assert [e["message"] for e in outcome.errors] == [
        "-/-: the commit declares more than 2 objects (limits.objects): it is refused whole, nothing from it is "
        "applied and the last applied state is kept"]
    assert (outcome.errors[0]["file"], outcome.errors[0]["line"]) == ("a.yaml", 13)
    # Nothing created, and b (whose file this commit deleted) not pruned: the last good state stands.
    assert names(store) == ["a", "b"]
    store.close()


def test_replicas_over_the_limit_keep_the_last_good_version(tmp_path: Path) -> None:
    repo, store, applier = setup(tmp_path, Limits())
    assert applier.apply(commit(repo, {"web.yaml": deployment(3)})).ok
    outcome = applier.apply(commit(repo, {"web.yaml": deployment(2147483647)}))
    assert [(e["file"], e["line"], e["message"]) for e in outcome.errors] == [
        ("web.yaml", 6, "Deployment/web: replicas 2147483647 exceeds limits.replicasPerObject (1000)")]
    live = store.get("Deployment", "default", "web")
    assert live is not None and live["spec"]["replicas"] == 3
    store.close()
