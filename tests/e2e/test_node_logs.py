"""`reconciler logs` of a pod on another host, as `kubectl logs` goes: CLI → the daemon's API →
the node agent's kubelet server on the host (198.18.0.10:10250, in a network namespace with its
own podman), pinned by the certificate hash the Node publishes, with the control plane's client
certificate. Plain, `--tail`, `--since`, `-f` (read until new lines arrive, then the client
leaves), a container that is not there, and the agent gone (one sentence, no traceback).
"""
from __future__ import annotations

import hashlib
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.harness.daemon_harness import REPO_ROOT, SERVICE_CIDR, Daemon, commit, init_repo, wait_for
from tests.harness.hostlab import ROOT_ADDRESS, HostLab
from tests.harness.node_agents import NodeAgent, join_line
from tests.harness.podman_fixtures import ImageRefs

pytestmark = pytest.mark.podman

TALKER = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: talker}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: talker}}}}
  template:
    metadata: {{labels: {{app: talker}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: app
          image: {image}
          command: ["sh", "-c", "echo line-1; echo line-2; echo line-3; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.5; done"]
"""


@pytest.fixture(scope="module")
def lab(images: ImageRefs) -> Iterator[HostLab]:
    with HostLab(hosts=1, images=(images.hello_v1,)) as made:
        yield made
    assert made.leftovers() == []


def ticks(text: str) -> list[int]:
    return [int(line.split()[1]) for line in text.splitlines() if line.startswith("tick ")]


def follow_until(state_dir: Path, pod: str, *, past: int, timeout: float = 30) -> list[str]:
    """`reconciler logs -f`, read until a tick after ``past`` arrives (or ``timeout``), then closed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "--state-dir", str(state_dir), "logs", "-f",
                             f"pod/{pod}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT, env=env)
    assert proc.stdout is not None
    lines: list[str] = []
    buffer = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        try:
            while time.monotonic() < deadline and not any(t > past for t in ticks("\n".join(lines))):
                if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    break
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                buffer += chunk
                *done, buffer = buffer.split(b"\n")
                lines += [d.decode() for d in done]
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert proc.stderr is not None
    stderr = proc.stderr.read().decode()
    assert any(t > past for t in ticks("\n".join(lines))), f"no new tick after {past}: {lines[-5:]} {stderr}"
    return lines


def test_logs_of_a_pod_on_a_remote_node(tmp_path: Path, lab: HostLab, images: ImageRefs) -> None:
    host = lab.hosts[0]
    agent: NodeAgent | None = None
    daemon: Daemon | None = None
    try:
        repo = tmp_path / "repo"
        init_repo(repo, {"README.md": "manifests\n"})
        port = 6443 + os.getpid() % 1000
        daemon = Daemon(repo=repo, state_dir=tmp_path / "state", nodes={},
                        config_extra={"localNode": False, "api": {"listen": f"{ROOT_ADDRESS}:{port}"}}).start()
        join = join_line(daemon)
        token = daemon.cli("token", "create", "--node").stdout.strip()
        agent_state = tmp_path / f"{host.name}-state"
        agent = NodeAgent(directory=tmp_path, name=host.name, token=token, netns=host.netns, settings={
            "servers": [join.server], "caHash": join.ca_hash, "nodeIP": host.address, "podCIDR": host.pod_cidr,
            "network": "reconciler", "podmanURL": host.url, "stateDir": str(agent_state),
            "serviceCIDR": SERVICE_CIDR}).start()

        def node() -> dict | None:
            nodes = {n["metadata"]["name"]: n for n in daemon.api("/api/v1/nodes")["items"]}
            found = nodes.get(host.name)
            ready = found and any(c["type"] == "Ready" and c["status"] == "True"
                                  for c in found["status"].get("conditions", []))
            return found if ready and found["status"].get("daemonEndpoints") else None

        published = wait_for(node, timeout=90, what=f"node {host.name} Ready with its kubelet endpoint")
        # The port the kubelet's, the hash that of the certificate the agent keeps in its state dir.
        assert published["status"]["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
        cert = x509.load_pem_x509_certificate((agent_state / "kubelet.crt").read_bytes())
        assert published["metadata"]["annotations"]["reconciler.io/kubelet-serving-cert-sha256"] == \
            hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()

        commit(repo, {"talker.yaml": TALKER.format(image=images.hello_v1)}, message="talker")
        daemon.cli("sync")

        def running() -> str | None:
            pods = daemon.api("/api/v1/namespaces/default/pods?labelSelector=app%3Dtalker")["items"]
            return next((p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Running"), None)

        name = wait_for(running, timeout=120, what="the talker pod Running on the remote host")
        whole = wait_for(lambda: (r := daemon.cli("logs", f"pod/{name}")).returncode == 0
                         and len(ticks(r.stdout)) >= 2 and r, timeout=60, what="two ticks in the pod's logs")
        assert whole.stdout.startswith("line-1\nline-2\nline-3\ntick 1\ntick 2\n"), whole.stdout

        last = daemon.cli("logs", f"pod/{name}", "--tail", "1")
        assert last.returncode == 0 and len(last.stdout.splitlines()) == 1, (last.stdout, last.stderr)
        assert ticks(last.stdout) and ticks(last.stdout)[0] >= ticks(whole.stdout)[-1], last.stdout
        recent = daemon.cli("logs", f"pod/{name}", "--since", "1h")
        assert recent.returncode == 0 and recent.stdout.startswith("line-1\n"), recent.stderr

        # -f: what is there, then lines as the container writes them; the client leaves when it has one.
        seen = ticks(daemon.cli("logs", f"pod/{name}").stdout)[-1]
        followed = follow_until(daemon.state_dir, name, past=seen)
        assert followed[:3] == ["line-1", "line-2", "line-3"], followed[:5]

        missing = daemon.cli("logs", f"pod/{name}", "-c", "nosuch")
        assert missing.returncode != 0 and "container nosuch is not valid" in missing.stderr, missing.stderr

        # The agent gone: one sentence naming the node and where it was asked.
        assert agent.stop(timeout=20) == 0
        gone = daemon.cli("logs", f"pod/{name}")
        assert gone.returncode != 0 and "Traceback" not in gone.stderr, gone.stderr
        assert f"cannot reach node {host.name}'s agent at {host.address}:10250" in gone.stderr.lower(), gone.stderr
    finally:
        if agent is not None:
            agent.close()
        if daemon is not None and daemon.proc and daemon.proc.poll() is None:
            daemon.stop()
