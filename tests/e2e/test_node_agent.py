"""`reconciler node` as its own process on a second podman service, joined with the line
`reconciler node join-command` prints, talking to the daemon only over HTTPS: its Node
registers and turns Ready, a pod bound to it runs on its podman and reports status; with the
daemon killed (-9) the pod keeps running and a container killed by hand is restarted by the
agent; the daemon back, the restart shows in the pod's status; the agent stopped, the pod
still runs."""
from __future__ import annotations

import ipaddress
import os
import signal
from pathlib import Path

import pytest

from tests.harness.daemon_harness import Daemon, commit, free_port, init_repo, wait_for
from tests.harness.node_agents import NodeAgent, join_line
from tests.harness.podman_fixtures import network_settings, podman_node2  # noqa: F401  (the second node)

pytestmark = pytest.mark.podman

PINNED = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: pinned}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: pinned}}}}
  template:
    metadata: {{labels: {{app: pinned}}}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: joiner}}
      terminationGracePeriodSeconds: 2
      containers: [{{name: app, image: "{image}", ports: [{{containerPort: 8080}}]}}]
"""


def ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in node["status"].get("conditions", []))


def pinned_pods(daemon: Daemon) -> list[dict]:
    return [p for p in daemon.api("/api/v1/pods?labelSelector=app%3Dpinned")["items"]
            if not p["metadata"].get("deletionTimestamp")]


def restarts(pod: dict) -> int:
    return sum(int(c.get("restartCount", 0)) for c in pod["status"].get("containerStatuses") or [])


def test_a_host_joins_and_runs_pods_through_an_outage(tmp_path: Path, podman_node, podman_node2, images) -> None:
    podman_node.remove_everything()
    podman_node2.remove_everything()
    repo = tmp_path / "repo"
    init_repo(repo, {"README.md": "manifests\n"})
    port = free_port()
    daemon = Daemon(repo=repo, state_dir=tmp_path / "state", nodes={"node1": podman_node.url},
                    config_extra={"api": {"listen": f"127.0.0.1:{port}"}}).start()
    agent: NodeAgent | None = None
    try:
        join = join_line(daemon)
        net = network_settings(podman_node2.url)
        bridge_ip = str(next(ipaddress.ip_network(net["podCIDR"]).hosts()))
        agent = NodeAgent(directory=tmp_path, name="joiner", token=join.token, settings={
            "servers": [join.server], "caHash": join.ca_hash,
            "podCIDR": net["podCIDR"], "network": net["network"], "podmanURL": podman_node2.url,
            # Hosts share this machine: the node's address is its own bridge's (no host-gw route needed).
            "nodeIP": bridge_ip,
            "labels": {"disk": "ssd"}, "stateDir": str(tmp_path / "node-state"),
            # This machine's kernel is shared with other test daemons: a table of this test's own.
            "nftTable": f"rcnode{os.getpid()}"}).start()

        def joiner() -> dict | None:
            nodes = {n["metadata"]["name"]: n for n in daemon.api("/api/v1/nodes")["items"]}
            return nodes.get("joiner")

        node = wait_for(lambda: (n := joiner()) and ready(n) and n, timeout=60, what="node joiner Ready")
        assert node["spec"]["podCIDR"] == net["podCIDR"] and node["metadata"]["labels"]["disk"] == "ssd"
        assert {"type": "InternalIP", "address": bridge_ip} in node["status"]["addresses"]

        commit(repo, {"pinned.yaml": PINNED.format(image=images.hello_v1)}, message="pinned to joiner")
        daemon.cli("sync")
        pod = wait_for(lambda: [p for p in pinned_pods(daemon) if p["status"].get("phase") == "Running"
                                and any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in p["status"].get("conditions", []))],
                       timeout=120, what="the pinned pod Running and Ready on joiner")[0]
        assert pod["spec"]["nodeName"] == "joiner"
        name = pod["metadata"]["name"]
        on_node2 = podman_node2.cli("ps", "--format", "{{.Names}}", check=True).stdout
        assert name in on_node2, on_node2
        assert name not in podman_node.cli("ps", "--format", "{{.Names}}", check=True).stdout
        # Its logs, through the joiner's kubelet server (on its nodeIP, port 10250), as kubectl logs goes.
        logs = daemon.cli("logs", f"pod/{name}")
        assert logs.returncode == 0 and "listening on :8080" in logs.stdout, logs.stderr

        # The control plane dies: the pod stays, and the agent still heals it.
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(timeout=10)
        app = f"default_{name}_app"  # runtime/podman/naming.py
        first_id = podman_node2.cli("inspect", "--format", "{{.Id}}", app, check=True).stdout.strip()
        podman_node2.cli("kill", app, check=True)

        def running_again() -> bool:
            # A restart is a new container from the image (a new id), running.
            out = podman_node2.cli("inspect", "--format", "{{.Id}} {{.State.Status}}", app).stdout.split()
            return len(out) == 2 and out[0] != first_id and out[1] == "running"

        wait_for(running_again, timeout=60, what="the agent to restart the container while the daemon is down")
        assert agent.running(), agent.log_text()[-3000:]

        daemon.start()
        wait_for(lambda: any(restarts(p) >= 1 for p in pinned_pods(daemon)), timeout=60,
                 what="the restart to show in the pod's status after the daemon's return")
        assert [p["metadata"]["name"] for p in pinned_pods(daemon)] == [name]  # not replaced

        # Drift corrected with the control plane up: the agent tells it, as an Event on its Node
        # (the daemon counts it and sends its Drift notifications, as for its own host's).
        podman_node2.cli("kill", app, check=True)

        def drift_events() -> list[dict]:
            events = daemon.api("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Djoiner")
            return [e for e in events["items"] if e.get("reason") == "DriftCorrected"]

        drifted = wait_for(drift_events, timeout=90, what="the agent's DriftCorrected Event on node joiner")
        assert drifted[0]["involvedObject"]["kind"] == "Node"
        assert "started a container again" in drifted[0]["message"], drifted

        # The agent stops: the pod keeps running.
        assert agent.stop(timeout=20) == 0
        assert name in podman_node2.cli("ps", "--format", "{{.Names}}", check=True).stdout
    finally:
        if agent is not None:  # the agent's kernel state outlives it on purpose: removed here
            agent.close()
        if daemon.proc and daemon.proc.poll() is None:
            daemon.stop()
        podman_node.remove_everything()
        podman_node2.remove_everything()
