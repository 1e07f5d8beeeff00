"""The real daemon serving its API over HTTPS on a loopback port (`api.listen`), as a user
drives it: `token create` over the local socket, then the CLI with --server/--token/--ca-hash;
a node token registers a node and reads what it needs and nothing more; `node join-command`
prints a line whose parts work; a wrong token, an expired one or a wrong CA hash is refused
with one sentence; the certificates made on first start are private (0600)."""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from reconciler.kubectl.client import ApiClient, ApiError
from tests.harness.cli_server import run_cli
from tests.harness.daemon_harness import REPO_ROOT, Daemon, free_port, init_repo, wait_for

pytestmark = pytest.mark.podman

JOIN = re.compile(r"^reconciler node --server (https://127\.0\.0\.1:\d+) --token (\S+) --ca-hash (sha256:[0-9a-f]{64})$")


def remote(url: str, token: str, ca_hash: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as run on another host: no state dir, only the server, token and CA hash."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env["RECONCILER_STATE_DIR"] = "/nonexistent/reconciler-state"  # the socket must not be what answers
    # Forked warm (cli_server), in a process of its own with this environment: as `reconciler ...` would run.
    return run_cli(["--server", url, "--token", token, "--ca-hash", ca_hash, *args], timeout=60, cwd=REPO_ROOT,
                   env=env)


def test_the_api_over_https_with_tokens(tmp_path: Path, podman_node) -> None:
    podman_node.remove_everything()
    repo = tmp_path / "repo"
    init_repo(repo, {"README.md": "manifests\n"})
    port = free_port()
    daemon = Daemon(repo=repo, state_dir=tmp_path / "state", nodes={"node1": podman_node.url},
                    config_extra={"api": {"listen": f"127.0.0.1:{port}"}}).start()
    try:
        # The certificates made on first start: private files in a private directory.
        pki = tmp_path / "state" / "pki"
        assert stat.S_IMODE(os.stat(pki).st_mode) == 0o700
        assert sorted(p.name for p in pki.iterdir()) == ["ca.crt", "ca.key", "server.crt", "server.key"]
        for path in pki.iterdir():
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path

        joined = daemon.cli("node", "join-command")
        assert joined.returncode == 0, joined.stderr
        match = JOIN.match(joined.stdout.strip())
        assert match, joined.stdout
        url, node_token, ca_hash = match.groups()
        assert url == f"https://127.0.0.1:{port}"

        made = daemon.cli("token", "create")
        assert made.returncode == 0, made.stderr
        admin = made.stdout.strip()

        # An admin token reads and acts, from "another host". The API answers before the local
        # node has registered (as kube-apiserver does before a kubelet joins): wait for it.
        def node_names() -> list[str]:
            status = remote(url, admin, ca_hash, "status", "-o", "json")
            assert status.returncode == 0, status.stderr
            return [n["name"] for n in json.loads(status.stdout)["nodes"]]

        assert wait_for(node_names, timeout=30, what="node1 in the remote status") == ["node1"]
        pods = remote(url, admin, ca_hash, "get", "pods", "-A")
        assert pods.returncode == 0, pods.stderr

        # No token, a wrong one, an expired one: 401, said in one sentence.
        with pytest.raises(ApiError) as caught:
            ApiClient(server=url, token=None, ca_hash=ca_hash).get("/status")
        assert caught.value.code == 401
        wrong = remote(url, admin[:-4] + "AAAA", ca_hash, "get", "pods")
        assert wrong.returncode == 1
        assert wrong.stderr.strip() == (f"error: The daemon at {url} refused the token: the token is not valid "
                                        "(unknown to this control plane).")
        short = daemon.cli("token", "create", "--ttl", "1s").stdout.strip()
        wait_for(lambda: "expired" in remote(url, short, ca_hash, "get", "pods").stderr, timeout=10,
                 what="the 1s token to expire")

        # A wrong CA hash is refused before anything is sent.
        pinned_wrong = remote(url, admin, "sha256:" + "0" * 64, "get", "pods")
        assert pinned_wrong.returncode == 3
        assert pinned_wrong.stderr.startswith(f"refusing {url}: its CA's hash is {ca_hash}, not the sha256:0000")
        assert "Traceback" not in pinned_wrong.stderr

        # The join line's node token: registers its node, reads nodes and its pods, and no admin verb.
        node = ApiClient(server=url, token=node_token, ca_hash=ca_hash)
        node.post("/api/v1/nodes", {"kind": "Node", "metadata": {"name": "joiner"}, "spec": {}})
        nodes = remote(url, node_token, ca_hash, "get", "nodes", "-o", "name")
        assert nodes.returncode == 0 and "node/joiner" in nodes.stdout, nodes.stderr
        assert node.get("/api/v1/pods?fieldSelector=spec.nodeName%3Djoiner")["items"] == []
        for verb in (("get", "pods", "-A"), ("get", "deploy"), ("status",), ("sync",)):
            refused = remote(url, node_token, ca_hash, *verb)
            assert refused.returncode == 1, verb
            assert refused.stderr.startswith("Error from server (Forbidden): a node token may only"), refused.stderr
        with pytest.raises(ApiError) as caught:
            node.post("/tokens", {"node": False})
        assert caught.value.code == 403
    finally:
        daemon.stop()
