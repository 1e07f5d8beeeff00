"""Revoking a permission bites (issue 13): the applier, a real Git repository and a real store.

A hostPath Deployment applied under ``allow.hostPath: true`` is stopped (deleted like a prune,
with a "Denied" event and state) and reported in the outcome's errors once an applier with a
policy that no longer allows it applies the same commit, as a restarted or reloaded daemon
does. A mistake in Git still keeps the last good version running, and a denied manifest whose
running version is permitted keeps that version (what runs is judged, as admission would).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from reconciler.core.clock import ManualClock
from reconciler.core.keys import OBJECT_STATES_KEY
from reconciler.gitops.applier import Applier
from reconciler.gitops.source import GitSource
from reconciler.manifests import Allow
from reconciler.store.store import Store


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env,
                          check=True).stdout.strip()


def commit(repo: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "change")
    return git(repo, "rev-parse", "HEAD")


def deployment(*, host_path: bool, image: str = "registry.example/app:1", name: str = "web") -> str:
    volumes = "      volumes:\n      - name: h\n        hostPath: {path: /var/log}\n" if host_path else ""
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  annotations: {{reconciler.io/prune: "false"}}
spec:
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: app
        image: {image}
{volumes}"""


def pod(*, capability: str) -> str:
    return f"""\
apiVersion: v1
kind: Pod
metadata: {{name: tool}}
spec:
  containers:
  - name: c
    image: busybox:1
    securityContext: {{capabilities: {{add: [{capability}]}}}}
"""


def applier(tmp_path: Path, store: Store, allow: Allow) -> Applier:
    return Applier(store=store, source=GitSource(repo=str(tmp_path / "repo"), branch="main"), clock=ManualClock(),
                   allow=allow)


def setup(tmp_path: Path) -> tuple[Path, Store]:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    return repo, Store(tmp_path / "store.db")


def states(store: Store) -> dict[str, str]:
    return {k: v["state"] for k, v in (store.kv_get(OBJECT_STATES_KEY) or {}).items()}


def test_a_revoked_host_path_stops_the_deployment_and_reports_it(tmp_path: Path) -> None:
    repo, store = setup(tmp_path)
    sha = commit(repo, {"web.yaml": deployment(host_path=True), "other.yaml": deployment(host_path=False,
                                                                                          name="other")})
    assert applier(tmp_path, store, Allow(host_path=True)).apply(sha).ok
    assert store.get("Deployment", "default", "web") is not None

    # The operator drops allow.hostPath and restarts: a new applier judges the same commit again.
    strict = applier(tmp_path, store, Allow())
    assert strict.policy_changed()
    outcome = strict.apply(sha)

    assert store.get("Deployment", "default", "web") is None          # stopped, despite prune: "false"
    assert store.get("Deployment", "default", "other") is not None    # one denial never stops the others
    assert [(c.kind, c.name, c.action) for c in outcome.changes] == [("Deployment", "web", "delete")]
    messages = [e["message"] for e in outcome.errors]
    assert any("hostPath volumes are denied" in m for m in messages), messages
    stopped = [e for e in outcome.errors if "stopped" in e["message"]]
    assert len(stopped) == 1 and stopped[0]["file"] == "web.yaml" and stopped[0]["line"] == 18, stopped
    assert stopped[0]["message"].startswith("Deployment/web: stopped: the daemon's policy denies what it runs "
                                            "(spec.template.spec.volumes[0].hostPath: hostPath volumes are denied")
    assert states(store)["Deployment/default/web"] == "Denied"
    assert [(e["type"], e["reason"]) for e in store.events(kind="Deployment", name="web")][-1:] \
        == [("Warning", "Denied")]
    assert not strict.policy_changed()

    # Allowed again: it comes back from Git.
    assert applier(tmp_path, store, Allow(host_path=True)).apply(sha).ok
    assert store.get("Deployment", "default", "web") is not None


def test_a_revoked_capability_stops_a_pod_kept_from_an_invalid_manifest(tmp_path: Path) -> None:
    repo, store = setup(tmp_path)
    first = commit(repo, {"tool.yaml": pod(capability="NET_ADMIN")})
    assert applier(tmp_path, store, Allow(capabilities=frozenset({"NET_ADMIN"}))).apply(first).ok
    # The next commit breaks the manifest (an invalid image): the last good version would be kept...
    second = commit(repo, {"tool.yaml": pod(capability="NET_ADMIN").replace("busybox:1", "../x")})
    kept = applier(tmp_path, store, Allow(capabilities=frozenset({"NET_ADMIN"}))).apply(second)
    assert not kept.ok and store.get("Pod", "default", "tool") is not None
    # ...but not once the policy no longer permits what it runs.
    outcome = applier(tmp_path, store, Allow()).apply(second)
    live = store.get("Pod", "default", "tool")
    assert live is None or live["metadata"].get("deletionTimestamp"), live   # stopping, with its grace period
    assert any("Pod/tool: stopped" in e["message"] and "capability NET_ADMIN" in e["message"]
               for e in outcome.errors), outcome.errors


def test_a_mistake_in_git_keeps_the_last_good_version(tmp_path: Path) -> None:
    repo, store = setup(tmp_path)
    commit(repo, {"web.yaml": deployment(host_path=False)})
    first = git(repo, "rev-parse", "HEAD")
    assert applier(tmp_path, store, Allow()).apply(first).ok
    bad = commit(repo, {"web.yaml": deployment(host_path=False, image="../x")})
    outcome = applier(tmp_path, store, Allow()).apply(bad)
    assert not outcome.ok and outcome.changes == ()
    assert store.get("Deployment", "default", "web")["spec"]["template"]["spec"]["containers"][0]["image"] \
        == "registry.example/app:1"
    assert states(store)["Deployment/default/web"] == "Failed"


def test_a_denied_manifest_keeps_a_permitted_running_version(tmp_path: Path) -> None:
    repo, store = setup(tmp_path)
    first = commit(repo, {"web.yaml": deployment(host_path=False)})
    assert applier(tmp_path, store, Allow()).apply(first).ok
    # Git now asks for a hostPath the policy denies: refused; what runs asks for nothing denied.
    second = commit(repo, {"web.yaml": deployment(host_path=True)})
    outcome = applier(tmp_path, store, Allow()).apply(second)
    assert not outcome.ok and outcome.changes == ()
    assert "volumes" not in store.get("Deployment", "default", "web")["spec"]["template"]["spec"]
    assert states(store)["Deployment/default/web"] == "Denied"
