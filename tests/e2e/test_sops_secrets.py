"""A SOPS-encrypted Secret in Git, end to end: the real daemon, with the age key of
`decryption.ageKeyFile`, decrypts the file the real `sops` tool wrote (Flux's fixture), a
Deployment's pod reads the value through `secretKeyRef`, and the value appears nowhere a
person or a log collector looks: not in the daemon's log, `status`, `describe` or `diff`.
A later commit that tampers with the ciphertext is an error for that Secret only: the last
good Secret stays, and the Deployment keeps running."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.harness.daemon_harness import Daemon, commit, init_repo, wait_for

pytestmark = pytest.mark.podman

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sops"
VALUE = "global-value"  # what the fixture decrypts to (its README)

APP = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: reader}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: reader}}}}
  template:
    metadata: {{labels: {{app: reader}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: app
          image: "{image}"
          env:
            - name: FROM_SECRET
              valueFrom: {{secretKeyRef: {{name: global-age-secret, key: key}}}}
"""


def ready_pods(daemon: Daemon) -> list[dict]:
    return [p for p in daemon.json("get", "pods", "-l", "app=reader")["items"]
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]


def test_an_encrypted_secret_reaches_the_pod_and_nowhere_else(tmp_path, podman_node, images) -> None:
    podman_node.remove_everything()
    repo = tmp_path / "repo"
    encrypted = (FIXTURES / "secret-global.enc.yaml").read_text()
    init_repo(repo, {"secret.yaml": encrypted, "app.yaml": APP.format(image=images.hello_v1)}, message="sops")
    daemon = Daemon(repo=repo, state_dir=tmp_path / "state", nodes={"node1": podman_node.url},
                    config_extra={"decryption": {"ageKeyFile": str(FIXTURES / "secret-global.agekey")}}).start()
    try:
        (pod,) = wait_for(lambda: ready_pods(daemon), timeout=120, what="a ready reader pod")
        container = f"default_{pod['metadata']['name']}_app"
        seen = podman_node.cli("exec", container, "/bin/busybox", "sh", "-c", "echo \"$FROM_SECRET\"")
        assert seen.returncode == 0 and seen.stdout.strip() == VALUE, seen.stderr

        status = daemon.json("status")
        assert status["errors"] == [], status["errors"]
        # `get` shows data base64-encoded, as Kubernetes does; `describe` masks it.
        secret = daemon.json("get", "secret", "global-age-secret")
        assert secret["data"] == {"key": base64.b64encode(VALUE.encode()).decode()}
        described = daemon.cli("describe", "secret", "global-age-secret")
        assert described.returncode == 0 and "key:" in described.stdout and "***" in described.stdout
        assert VALUE not in described.stdout

        # A tampered ciphertext: an error for the Secret alone; the last good one stays.
        tampered = encrypted.replace("data:5d9WYyV8eyrOhF/m", "data:5d9WYyV8eyrOhF/n")
        assert tampered != encrypted
        commit(repo, {"secret.yaml": tampered, "app.yaml": APP.format(image=images.hello_v1) + "# touched\n"},
               message="tampered")
        errors = wait_for(lambda: daemon.json("status")["errors"], timeout=30, what="the tampered file's error")
        assert [(e["file"], e["line"]) for e in errors] == [("secret.yaml", 8)], errors
        assert "Secret/global-age-secret: stringData.key: cannot decrypt this value" in errors[0]["message"]
        assert daemon.json("get", "secret", "global-age-secret")["data"] == secret["data"]
        assert ready_pods(daemon)

        # `diff` against the tampered head: the Secret cannot be read, so it is not a change.
        diff = daemon.cli("diff", "-o", "json")
        assert VALUE not in diff.stdout and base64.b64encode(VALUE.encode()).decode() not in diff.stdout

        everything = daemon.log_text() + str(daemon.json("status")) + daemon.cli("get", "events").stdout
        assert VALUE not in everything
        assert base64.b64encode(VALUE.encode()).decode() not in everything
    finally:
        daemon.stop()
        podman_node.remove_everything()
