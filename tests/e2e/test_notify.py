"""Notifications and forge commit status from a real daemon on real podman.

The test runs both receivers on 127.0.0.1: a JSON webhook (reached through apprise's
json://) and a Gitea-shaped statuses API. A good commit must reach the webhook as Healthy
with its SHA and set the forge's status pending, then success; a commit with a manifest
error must reach both as a failure.
"""
from __future__ import annotations

import pytest

from tests.harness.daemon_harness import Daemon, commit, init_repo, wait_for
from tests.unit.notify.receiver import receiving

pytestmark = pytest.mark.podman

APP = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers: [{{name: app, image: "{image}"}}]
"""


def states_for(forge, sha: str) -> list[str]:
    return [r.body["state"] for r in forge.requests if r.path.endswith(f"/statuses/{sha}")]


def test_a_good_commit_notifies_healthy_and_sets_pending_then_success(tmp_path, podman_node, images):
    podman_node.remove_everything()
    token = tmp_path / "forge.token"
    token.write_text("e2e-token\n")
    repo = tmp_path / "repo"
    first = init_repo(repo, {"web.yaml": APP.format(replicas=1, image=images.hello_v1)}, message="web v1")
    with receiving(default=200) as hook, receiving() as forge:
        daemon = Daemon(repo=repo, state_dir=tmp_path / "state", nodes={"node1": podman_node.url}, config_extra={
            "notify": [{"url": f"json://127.0.0.1:{hook.port}/hook", "events": ["Healthy", "Failed", "RolledBack"]}],
            "commitStatus": {"provider": "gitea", "url": forge.url, "tokenFile": str(token),
                             "repository": "team/web"},
        }).start()
        try:
            wait_for(lambda: any(r.body.get("commit") == first and r.body.get("state") == "Healthy"
                                 for r in hook.requests), timeout=120, what="the Healthy notification")
            wait_for(lambda: "success" in states_for(forge, first), timeout=30, what="the success status")
            assert states_for(forge, first) == ["pending", "success"]
            note = next(r.body for r in hook.requests if r.body.get("commit") == first)
            assert note["subject"] == "web v1" and note["type"] == "success" and first[:12] in note["title"]
            status = next(r for r in forge.requests if r.path.endswith(f"/statuses/{first}"))
            assert status.method == "POST" and status.path == f"/api/v1/repos/team/web/statuses/{first}"
            assert status.headers["Authorization"] == "token e2e-token"
            assert status.body["context"] == "reconciler"

            # A manifest error: Failed to the webhook, failure on the forge; the running app is untouched.
            bad = commit(repo, {"web.yaml": APP.format(replicas="lots", image=images.hello_v2)}, message="web broken")
            wait_for(lambda: any(r.body.get("commit") == bad and r.body.get("state") == "Failed"
                                 for r in hook.requests), timeout=60, what="the Failed notification")
            wait_for(lambda: "failure" in states_for(forge, bad), timeout=30, what="the failure status")
            assert states_for(forge, bad) == ["pending", "failure"]
            assert "e2e-token" not in daemon.log_text()
        finally:
            daemon.stop()
            podman_node.remove_everything()
