"""The real daemon keeps its state private under any umask: started with umask 000 (the
worst case; 022 is the common one) into a state dir the test made 0777, it leaves the dir
0700 and everything of its own in it without a group or other bit: the store and its WAL
files (Secrets), the API socket, the log, the API's CA and keys. The pods' volume
directories sit in a 0700 ``volumes/`` (their own modes are for the containers' users).
Before: 0755 and 0644 under umask 022, so any local user could read Secrets from store.db."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.harness.daemon_harness import Daemon, free_port, init_repo, wait_for

pytestmark = pytest.mark.podman

MANIFESTS = {
    "secret.yaml": """\
apiVersion: v1
kind: Secret
metadata: {name: db}
stringData: {password: hunter2}
""",
    "web.yaml": """\
apiVersion: v1
kind: ConfigMap
metadata: {name: web}
data: {index.html: hello}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: web
          image: IMAGE
          volumeMounts: [{name: page, mountPath: /page}]
      volumes: [{name: page, configMap: {name: web}}]
""",
}


def loose(state: Path) -> list[str]:
    """Everything under ``state`` a group or other user has a bit on (volume contents aside)."""
    found = []
    for directory, subdirs, files in os.walk(state):
        for name in (*subdirs, *files):
            path = Path(directory) / name
            relative = path.relative_to(state)
            if relative.parts[0] == "volumes" and len(relative.parts) > 1:
                continue
            bits = stat.S_IMODE(os.lstat(path).st_mode)
            if bits & 0o077:
                found.append(f"{relative} {bits:o}")
    return found


def test_the_state_dir_is_private_under_umask_000(tmp_path: Path, podman_node, images) -> None:
    repo = tmp_path / "repo"
    init_repo(repo, {name: text.replace("IMAGE", images.hello_v1) for name, text in MANIFESTS.items()})
    state = tmp_path / "state"
    state.mkdir(mode=0o777)
    os.chmod(state, 0o777)  # an existing, wide-open state dir: the daemon must tighten it
    daemon = Daemon(repo=repo, state_dir=state, nodes={"node1": podman_node.url},
                    config_extra={"api": {"listen": f"127.0.0.1:{free_port()}"}})
    previous = os.umask(0o000)  # inherited by the daemon process
    try:
        daemon.start()
    finally:
        os.umask(previous)
    try:
        wait_for(lambda: any((p.get("status") or {}).get("phase") == "Running"
                             for p in daemon.json("get", "pods")["items"]), timeout=120, what="the pod running")
        names = {p.name for p in state.iterdir()}
        assert {"store.db", "api.sock", "reconciler.log", "pki", "volumes"} <= names, names
        assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
        assert any((state / "volumes").iterdir()), "the pod's configMap volume is under volumes/"
        assert loose(state) == []
        assert stat.S_IMODE(os.stat(state / "store.db").st_mode) == 0o600
        assert stat.S_IMODE(os.stat(state / "api.sock").st_mode) == 0o600
    finally:
        daemon.stop()
    assert loose(state) == []
