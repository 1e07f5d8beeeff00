"""Two real podman nodes on this machine (own storage, socket and network each) under the
real daemon: spread, nodeSelector, a pod that fits nowhere, and a node that dies and
comes back — replaced within the toleration plus 15 s, the Service answering all along,
its stale pods removed on return, and never more pods running than declared.

The daemon runs with a 5 s node toleration from its config (``nodeToleration: 5s``)."""
from __future__ import annotations

import ipaddress
import json
import re
import time
from pathlib import Path

import pytest

from reconciler.daemon.config import ConfigError, load_config
from tests.harness.daemon_harness import REPO_ROOT, Daemon, commit, daemon_settings, init_repo, wait_for
from tests.harness.podman_fixtures import podman_node2  # noqa: F401  (the second node's fixture)
from tests.harness.traffic import RequestLoop

pytestmark = pytest.mark.podman

TOLERATION = 5.0

WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 6
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: web
          image: {image}
          ports: [{{name: http, containerPort: 8080}}]
          resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}
          readinessProbe:
            httpGet: {{path: /index.html, port: http}}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"""

PINNED = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: pinned}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: pinned}}}}
  template:
    metadata: {{labels: {{app: pinned}}}}
    spec:
      terminationGracePeriodSeconds: 2
      nodeSelector: {{kubernetes.io/hostname: node2}}
      containers: [{{name: web, image: {image}, ports: [{{containerPort: 8080}}]}}]
"""

HUGE = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: huge}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: huge}}}}
  template:
    metadata: {{labels: {{app: huge}}}}
    spec:
      containers:
        - name: web
          image: {image}
          resources: {{requests: {{cpu: "1000", memory: 16Mi}}}}
"""


class MultiNodeDaemon(Daemon):
    """The harness's daemon with the config this test needs: each node's pod CIDR and network
    (its podman service's own bridge), the session's service range and table, and a short
    node toleration."""

    def __init__(self, *, settings: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self.settings = settings

    def write_config(self) -> Path:
        path = self.config_path
        path.write_text(json.dumps({**self.settings, **daemon_settings(self.nodes)}))
        return path

    def start(self) -> MultiNodeDaemon:
        import subprocess
        import sys

        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = self.write_config()
        try:
            load_config(path=config, overrides={"source.repo": str(self.repo)})
        except ConfigError as exc:
            pytest.fail(f"the daemon's config does not take this test's settings yet ({exc}); "
                        "reconciler/config.py needs the nodeToleration key (see docs/nodes.md).", pytrace=False)
        args = [sys.executable, "-m", "reconciler", "daemon", "--config", str(config), "--repo", str(self.repo),
                "--branch", "main", "--state-dir", str(self.state_dir), *self.extra]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        wait_for(lambda: self.cli("status", "-o", "json").returncode == 0, timeout=60, what="the daemon's API")
        return self


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, podman_node, podman_node2, images):
    nodes = {"node1": podman_node, "node2": podman_node2}
    for node in nodes.values():
        node.remove_everything()
    base = tmp_path_factory.mktemp("multinode")
    repo = base / "repo"
    init_repo(repo, {"web.yaml": WEB.format(image=images.hello_v1)}, message="web")
    daemon = MultiNodeDaemon(
        repo=repo, state_dir=base / "state", nodes={name: node.url for name, node in nodes.items()},
        settings={"nodeToleration": f"{TOLERATION:g}s"}).start()
    yield {"daemon": daemon, "repo": repo, "nodes": nodes, "images": images}
    if daemon.proc and daemon.proc.poll() is None:
        daemon.stop()
    for node in nodes.values():
        node.remove_everything()


def pods(daemon: Daemon, app: str) -> list[dict]:
    return daemon.json("get", "pods", "-l", f"app={app}")["items"]


def ready(pod: dict) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def placement(items: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for pod in items:
        node = pod["spec"].get("nodeName") or ""
        counts[node] = counts.get(node, 0) + 1
    return counts


def engine_pods(node, *, running_only: bool = False) -> list[str]:
    """Pod names on a node's engine, straight from podman (infra containers make a pod 'Running')."""
    args = ["pod", "ps", "--format", "{{.Name}} {{.Status}}"]
    out = node.cli(*args, check=True).stdout.split("\n")
    return sorted(line.split()[0] for line in out if line.strip()
                  and (not running_only or line.split()[1] == "Running"))


def node_ready(daemon: Daemon, name: str) -> bool:
    node = daemon.json("get", "node", name)
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))


def test_six_replicas_over_two_nodes_run_three_and_three(cluster):
    daemon, nodes = cluster["daemon"], cluster["nodes"]
    items = wait_for(lambda: (p := pods(daemon, "web")) and len([x for x in p if ready(x)]) == 6 and p,
                     timeout=120, what="6 ready web pods")
    assert placement(items) == {"node1": 3, "node2": 3}
    for name, node in nodes.items():
        cidr = ipaddress.ip_network(node.pod_cidr)
        ips = [p["status"]["podIP"] for p in items if p["spec"]["nodeName"] == name]
        assert all(ipaddress.ip_address(ip) in cidr for ip in ips) and len(set(ips)) == 3
        assert len(engine_pods(node, running_only=True)) == 3
    # The two engines never hand out the same container address: each has its own bridge and subnet.
    bridge_ips = {name: node.pod_bridge_ips() for name, node in nodes.items()}
    for name, node in nodes.items():
        subnet = ipaddress.ip_network(node.slot.subnet)
        assert len(bridge_ips[name]) == 3 and all(ipaddress.ip_address(ip) in subnet
                                                  for ip in bridge_ips[name].values()), bridge_ips
    everything = [ip for per_node in bridge_ips.values() for ip in per_node.values()]
    assert len(everything) == len(set(everything)), bridge_ips
    # What a user sees.
    wide = [line.split() for line in daemon.cli("get", "nodes", "-o", "wide").stdout.splitlines()]
    header, rows = wide[0], {row[0]: dict(zip(wide[0], row)) for row in wide[1:]}
    assert header[:7] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "POD-CIDR", "PODS"]
    assert rows["node1"]["STATUS"] == "Ready" and rows["node1"]["PODS"] == "3"
    assert rows["node2"]["POD-CIDR"] == nodes["node2"].pod_cidr
    described = daemon.cli("describe", "node", "node1").stdout
    for expected in (r"Capacity:", r"Allocatable:", r"Non-terminated Pods:\s+\(3 in total\)", r"EngineReady",
                     r"Allocated resources:(.|\n)*cpu\s+30m \(\d+%\)(.|\n)*memory\s+48Mi \(\d+%\)"):
        assert re.search(expected, described), f"{expected!r} not in:\n{described}"


def test_node_selector_on_hostname_holds(cluster):
    daemon, repo = cluster["daemon"], cluster["repo"]
    commit(repo, {"pinned.yaml": PINNED.format(image=cluster["images"].hello_v1)}, message="pinned")
    items = wait_for(lambda: (p := pods(daemon, "pinned")) and len([x for x in p if ready(x)]) == 2 and p,
                     timeout=60, what="2 ready pinned pods")
    assert placement(items) == {"node2": 2}


def test_a_pod_whose_requests_fit_nowhere_stays_pending(cluster):
    daemon, repo = cluster["daemon"], cluster["repo"]
    commit(repo, {"huge.yaml": HUGE.format(image=cluster["images"].hello_v1)}, message="huge")
    pod = wait_for(lambda: (p := pods(daemon, "huge")) and p[0], timeout=30, what="the huge pod")
    name = pod["metadata"]["name"]
    described = wait_for(lambda: (d := daemon.cli("describe", "pod", name).stdout) and "FailedScheduling" in d and d,
                         timeout=15, what="a FailedScheduling event")
    assert "0/2 nodes are available: 2 Insufficient cpu." in described
    pod = daemon.json("get", "pod", name)
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
    scheduled = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"][0]
    assert scheduled["status"] == "False" and scheduled["reason"] == "Unschedulable"
    # Removed from Git: the never-scheduled pod goes at once (it is not stuck Terminating).
    commit(repo, {"huge.yaml": ""}, message="no huge")
    wait_for(lambda: not pods(daemon, "huge"), timeout=30, what="the huge pod gone")


def test_a_dead_node_is_replaced_and_its_stale_pods_removed_when_it_returns(cluster):
    daemon, nodes = cluster["daemon"], cluster["nodes"]
    node1 = nodes["node1"]
    wait_for(lambda: len([x for x in pods(daemon, "web") if ready(x)]) == 6, timeout=60, what="6 ready web pods")
    lost = {p["metadata"]["uid"] for p in pods(daemon, "web") if p["spec"]["nodeName"] == "node1"}
    assert len(lost) == 3
    cluster_ip = daemon.json("get", "svc", "web")["spec"]["clusterIP"]
    # failed_at: when each failed request was *sent*.
    with RequestLoop(f"http://{cluster_ip}:80/", pause=0.02, max_requests=100_000) as results:
        results.wait_running(10, timeout=15)
        # The host dies: its podman service goes, and so do its containers (which conmon would
        # otherwise keep running without the service).
        crashed_at = time.monotonic()
        node1.service.stop()
        killed = node1.local_cli("kill", "--all")
        assert killed.returncode == 0, killed.stderr
        crash_done = time.monotonic()
        wait_for(lambda: not node_ready(daemon, "node1"), timeout=3 * 5 + 5, interval=0.2, what="node1 NotReady")
        not_ready_at = time.monotonic()
        # Its pods are Unknown and not ready at once (they may already be gone if the poll was slow).
        on_node1 = [p for p in pods(daemon, "web") if p["spec"].get("nodeName") == "node1"]
        assert all(p["status"]["phase"] == "Unknown" and not ready(p) for p in on_node1), on_node1

        def replaced() -> bool:
            items = pods(daemon, "web")
            return (len(items) == 6 and placement(items) == {"node2": 6} and all(ready(p) for p in items)
                    and not lost & {p["metadata"]["uid"] for p in items})

        wait_for(replaced, timeout=TOLERATION + 15, interval=0.25, what="node1's replicas replaced on node2")
        replaced_after = time.monotonic() - not_ready_at
        assert replaced_after <= TOLERATION + 15
        wait_for(lambda: results.ok > 0 and time.monotonic() > not_ready_at + 0.5, timeout=5,
                 what="the client after the failover")
    # As with kube-proxy: until the dead host's pods leave the endpoints (it is NotReady, its pods
    # not ready), the kernel's rules still send some connections to them, and those fail (at
    # once: "no route to host", never off this machine). Every request sent once the endpoints
    # changed (NotReady + a moment for the endpoints controller and the data plane's sync) is
    # answered by the pods left: during the failover and after it.
    late = [round(t - crash_done, 2) for t in results.failed_at if t > not_ready_at + 2]
    assert not late, f"requests sent {late} s after the crash failed: {results.errors[-5:]}"
    assert all("404" not in error.partition(" ")[2] for error in results.errors), results.errors[:5]
    assert all(t >= crashed_at - 5 for t in results.failed_at), "requests failed before the crash"
    assert results.ok > 100 and results.gaps < 6, f"the Service did not answer for {results.gaps:.1f}s"

    # The host returns with its old (stopped) pods: the store knows nothing of them, so they go.
    node1.service.start(timeout=60)
    assert len(engine_pods(node1)) == 3
    wait_for(lambda: node_ready(daemon, "node1"), timeout=15, what="node1 Ready again")
    wait_for(lambda: engine_pods(node1) == [], timeout=30, what="node1's stale pods removed")
    # Exactly what is declared runs: the 6 web replicas (and whatever else the store holds), each
    # once, all on node2's engine.
    items = pods(daemon, "web")
    assert len(items) == 6 and all(ready(p) for p in items) and placement(items) == {"node2": 6}
    in_store = sorted(f"{p['metadata']['namespace']}_{p['metadata']['name']}"
                      for p in daemon.json("get", "pods", "-A")["items"])
    assert engine_pods(nodes["node2"], running_only=True) == in_store
    assert engine_pods(node1) == []
