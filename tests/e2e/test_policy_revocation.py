"""Revoking a permission bites, on the real daemon and podman (issue 13).

A hostPath Deployment runs under ``allow.hostPath: true``; the daemon is restarted with a
config that drops it and the same commit at the head. Its pods must stop (in the store and
in podman), and ``status`` must say why: the error names the object and the denied field,
and the object's state is "Denied".
"""
from __future__ import annotations

import pytest

from runtime.podman.driver import PodmanDriver
from tests.harness.daemon_harness import Daemon, init_repo, wait_for

pytestmark = pytest.mark.podman

HOST_PATH_APP = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: logger
spec:
  replicas: 1
  selector: {{matchLabels: {{app: logger}}}}
  template:
    metadata: {{labels: {{app: logger}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: app
        image: "{image}"
        volumeMounts: [{{name: host, mountPath: /host}}]
      volumes:
      - name: host
        hostPath: {{path: {path}, type: DirectoryOrCreate}}
"""


def test_a_restart_without_allow_host_path_stops_the_deployment(tmp_path, podman_node, images):
    podman_node.remove_everything()
    repo = tmp_path / "repo"
    init_repo(repo, {"logger.yaml": HOST_PATH_APP.format(image=images.hello_v1, path=tmp_path / "hostdir")},
              message="a hostPath app")
    driver = PodmanDriver(url=podman_node.url)

    def engine_pods() -> list:
        return [p for p in driver.list_pods() if p.name.startswith("logger-")]

    permissive = Daemon(repo=repo, state_dir=tmp_path / "state", nodes={"node1": podman_node.url},
                        config_extra={"allow": {"hostPath": True}}).start()
    try:
        wait_for(lambda: engine_pods(), timeout=90, what="the hostPath app's pod in podman")
    finally:
        permissive.stop()

    strict = Daemon(repo=repo, state_dir=tmp_path / "state", nodes={"node1": podman_node.url}).start()
    try:
        wait_for(lambda: not engine_pods() and not strict.json("get", "pods", "-l", "app=logger")["items"],
                 timeout=90, what="the hostPath app stopped after allow.hostPath was dropped")
        assert strict.cli("get", "deployment", "logger").returncode != 0
        status = strict.json("status")
        stopped = [e for e in status["errors"] if "Deployment/logger: stopped" in e["message"]]
        assert stopped and "hostPath volumes are denied" in stopped[0]["message"], status["errors"]
        assert [o["state"] for o in status["objects"] if o["name"] == "logger"] == ["Denied"]
    finally:
        strict.stop()
        podman_node.remove_everything()
