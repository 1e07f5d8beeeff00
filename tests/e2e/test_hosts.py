"""Three hosts (network namespaces with their own podman) joined to a daemon with
`reconciler node`, talking to it only over HTTPS; the daemon runs no node agent of its own
(`localNode: false`).

Six replicas spread over the hosts; a pod reaches pods on other hosts (host-gw routes the
agents make); on every host a pod reaches the Service by name and by its environment
variables; the NodePort answers on every host's address and on 127.0.0.1 there, the
ClusterIP from every host; and while requests flow through the ClusterIP and the NodePort,
the daemon and then an agent are killed (-9): no request fails and no pod restarts.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.daemon_harness import SERVICE_CIDR, Daemon, commit, init_repo, wait_for
from tests.harness.hostlab import ROOT_ADDRESS, Host, HostLab, in_netns, run
from tests.harness.node_agents import NodeAgent, join_line
from tests.harness.podman_fixtures import ImageRefs

pytestmark = pytest.mark.podman

NODE_PORT = 30000 + os.getpid() % 2700  # any port of the range: each host's rules are its own

SERVICES = """\
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-np}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http, nodePort: {node_port}}}]
"""

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
"""


@pytest.fixture(scope="module")
def lab(images: ImageRefs) -> Iterator[HostLab]:
    """Three hosts for both tests: making them is three podman services, namespaces and image
    pulls. Each test starts its own daemon and agents and leaves the hosts clean (``tear_down``);
    the lab goes at the end of the module, and nothing of it may stay on the machine."""
    with HostLab(hosts=3, images=(images.hello_v1,)) as made:
        yield made
    assert made.leftovers() == []


def get_inside(host: Host, container: str, target: str, port: int) -> str:
    """An HTTP GET from inside a container on ``host`` (busybox nc; its wget crashes here)."""
    request = f"printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {target} {port}"
    return host.podman("exec", container, "/bin/busybox", "sh", "-c", request).stdout


def web_pods(daemon: Daemon) -> list[dict]:
    return [p for p in daemon.api("/api/v1/namespaces/default/pods?labelSelector=app%3Dweb")["items"]
            if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def start_agent(lab_dir: Path, host: Host, *, server: str, token: str, ca_hash: str) -> NodeAgent:
    # In the host's network only (nsenter --net): the agent's nftables table and routes are the host's.
    return NodeAgent(directory=lab_dir, name=host.name, token=token, netns=host.netns, settings={
        "servers": [server], "caHash": ca_hash, "nodeIP": host.address, "podCIDR": host.pod_cidr,
        "network": "reconciler", "podmanURL": host.url, "stateDir": str(lab_dir / f"{host.name}-state"),
        "serviceCIDR": SERVICE_CIDR}).start()


def test_three_hosts_pods_services_and_nodeports_survive_kill_9(tmp_path: Path, lab: HostLab,
                                                                images: ImageRefs) -> None:
    agents: dict[str, NodeAgent] = {}
    daemon: Daemon | None = None
    try:
        repo = tmp_path / "repo"
        init_repo(repo, {"services.yaml": SERVICES.format(node_port=NODE_PORT)})
        port = 6443 + os.getpid() % 1000
        daemon = Daemon(repo=repo, state_dir=tmp_path / "state", nodes={},
                        config_extra={"localNode": False, "nodeToleration": "30s",
                                      "api": {"listen": f"{ROOT_ADDRESS}:{port}"}}).start()
        join = join_line(daemon)
        server, ca_hash = join.server, join.ca_hash
        for host in lab.hosts:  # a node token is bound to the node that uses it first: one each
            token = daemon.cli("token", "create", "--node").stdout.strip()
            agents[host.name] = start_agent(tmp_path, host, server=server, token=token, ca_hash=ca_hash)

        def nodes_ready() -> bool:
            nodes = daemon.api("/api/v1/nodes")["items"]
            return sorted(n["metadata"]["name"] for n in nodes if ready_node(n)) == [h.name for h in lab.hosts]

        wait_for(nodes_ready, timeout=90, what="three nodes Ready")
        commit(repo, {"web.yaml": WEB.format(image=images.hello_v1)}, message="web")
        daemon.cli("sync")
        pods = wait_for(lambda: (ps := web_pods(daemon)) and len(ps) == 6 and all(ready(p) for p in ps) and ps,
                        timeout=180, what="six web pods Ready")
        spread = Counter(p["spec"]["nodeName"] for p in pods)
        assert sorted(spread.values()) == [2, 2, 2], spread
        by_host = {h.name: [p for p in pods if p["spec"]["nodeName"] == h.name] for h in lab.hosts}
        cluster_ip = daemon.api("/api/v1/namespaces/default/services/web")["spec"]["clusterIP"]

        # Pod -> pod on another host (host-gw routes), and pod -> Service by name and env vars.
        for index, host in enumerate(lab.hosts):
            container = f"default_{by_host[host.name][0]['metadata']['name']}_web"
            other = by_host[lab.hosts[(index + 1) % 3].name][0]["status"]["podIP"]
            wait_for(lambda: "200 OK" in get_inside(host, container, other, 8080), timeout=20,
                     what=f"{host.name}: a pod reaches pod {other} on another host")
            # Each agent learns Endpoints from the API (a watch for its pods, a relist of the rest
            # every 2 s): its kernel rules follow within seconds.
            wait_for(lambda: "200 OK" in get_inside(host, container, "web", 80), timeout=20,
                     what=f"{host.name}: a pod reaches the Service by name")
            env = host.podman("exec", container, "/bin/busybox", "sh", "-c",
                              "echo $WEB_SERVICE_HOST:$WEB_SERVICE_PORT").stdout.strip()
            assert env == f"{cluster_ip}:80", env
            # NodePort on the host's own 127.0.0.1 and the ClusterIP, from the host.
            for url in (f"http://127.0.0.1:{NODE_PORT}/index.html", f"http://{cluster_ip}/index.html"):
                wait_for(lambda: in_netns(host.netns, "curl", "-s", "-m", "5", "-o", "/dev/null", "-w",
                                          "%{http_code}", url, check=False).stdout == "200",
                         timeout=20, what=f"{host.name}: {url} from the host")
            # NodePort on the host's address, from the control plane's side.
            wait_for(lambda: run("curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}",
                                 f"http://{host.address}:{NODE_PORT}/index.html", check=False).stdout == "200",
                     timeout=20, what=f"{host.name}: the NodePort on {host.address}")

        # kill -9 the daemon, then an agent, while requests flow: none may fail.
        failures: list[str] = []
        sent = Counter()
        stop = threading.Event()
        target_host = lab.hosts[1]

        def flow(name: str, command: list[str]) -> None:
            for _ in range(400):  # bounded: ~20 s at most at this pace
                if stop.is_set():
                    return
                got = subprocess.run(command, capture_output=True, text=True, timeout=10)
                sent[name] += 1
                if got.stdout != "200":
                    failures.append(f"{name}: {got.stdout!r} {got.stderr.strip()}")
                time.sleep(0.05)

        from_pod_host = lab.hosts[2]
        from_pod = f"default_{by_host[from_pod_host.name][0]['metadata']['name']}_web"

        def flow_from_pod() -> None:
            # One exec, a bounded loop inside the pod: the Service by name, ~10 requests a second.
            loop = ("i=0; while [ $i -lt 140 ]; do i=$((i+1)); "
                    "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 3 web 80 | head -n 1; "
                    "sleep 0.1; done")
            got = from_pod_host.podman("exec", from_pod, "/bin/busybox", "sh", "-c", loop, timeout=120)
            lines = got.stdout.splitlines()
            sent["pod"] += len(lines)
            failures.extend(f"pod: {line!r}" for line in lines if "200 OK" not in line)
            if len(lines) < 140:
                failures.append(f"pod: only {len(lines)} of 140 answers ({got.stderr.strip()[:200]})")

        flows = [
            threading.Thread(target=flow_from_pod),
            threading.Thread(target=flow, args=("nodeport", [
                "curl", "-s", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}",
                f"http://{target_host.address}:{NODE_PORT}/index.html"])),
            threading.Thread(target=flow, args=("clusterip", [
                "nsenter", f"--net=/run/netns/{target_host.netns}", "curl", "-s", "-m", "3", "-o", "/dev/null",
                "-w", "%{http_code}", f"http://{cluster_ip}/index.html"])),
        ]
        for thread in flows:
            thread.start()
        try:
            time.sleep(2)
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGKILL)
            daemon.proc.wait(timeout=10)
            time.sleep(4)
            agents[target_host.name].kill()
            time.sleep(6)
        finally:
            stop.set()
            for thread in flows:
                thread.join(timeout=30)
        assert sent["nodeport"] > 20 and sent["clusterip"] > 20 and sent["pod"] > 20, sent
        assert failures == [], failures[:5]

        daemon.start()  # the killed agent stays down: its pods run on, unrestarted
        after = web_pods(daemon)
        assert sorted(p["metadata"]["name"] for p in after) == sorted(p["metadata"]["name"] for p in pods)
        assert all(int(c.get("restartCount", 0)) == 0 for p in after
                   for c in p["status"].get("containerStatuses") or [])
    finally:
        tear_down(lab, agents, daemon)


def test_a_lost_host_is_replaced_and_its_stale_pods_removed_when_it_returns(tmp_path: Path, lab: HostLab,
                                                                           images: ImageRefs) -> None:
    """Cut a host off the network (its agent and pods keep running, unseen): NotReady after the
    heartbeat grace, its pods replaced on the others after ``nodeToleration``; back on the
    network, its agent finds its pods gone from the API and removes them from its podman."""
    agents: dict[str, NodeAgent] = {}
    daemon: Daemon | None = None
    try:
        repo = tmp_path / "repo"
        init_repo(repo, {"README.md": "manifests\n"})
        port = 7443 + os.getpid() % 1000
        daemon = Daemon(repo=repo, state_dir=tmp_path / "state", nodes={},
                        config_extra={"localNode": False, "nodeToleration": "5s",
                                      "api": {"listen": f"{ROOT_ADDRESS}:{port}"}}).start()
        join = join_line(daemon)
        server, ca_hash = join.server, join.ca_hash
        for host in lab.hosts:
            token = daemon.cli("token", "create", "--node").stdout.strip()
            agents[host.name] = start_agent(tmp_path, host, server=server, token=token, ca_hash=ca_hash)
        wait_for(lambda: sorted(n["metadata"]["name"] for n in daemon.api("/api/v1/nodes")["items"]
                                if ready_node(n)) == [h.name for h in lab.hosts],
                 timeout=90, what="three nodes Ready")
        commit(repo, {"web.yaml": WEB.format(image=images.hello_v1)}, message="web")
        daemon.cli("sync")
        pods = wait_for(lambda: (ps := web_pods(daemon)) and len(ps) == 6 and all(ready(p) for p in ps) and ps,
                        timeout=240, what="six web pods Ready on three hosts")
        lost = lab.hosts[2]
        assert any(p["spec"]["nodeName"] == lost.name for p in pods)

        run("ip", "-n", lab.switch, "link", "set", lost.name, "down")  # the host drops off the network

        def node_ready(name: str) -> bool:
            nodes = {n["metadata"]["name"]: n for n in daemon.api("/api/v1/nodes")["items"]}
            return ready_node(nodes[name])

        wait_for(lambda: not node_ready(lost.name), timeout=90, what=f"{lost.name} NotReady")

        def replaced() -> bool:
            ps = web_pods(daemon)
            return (len(ps) == 6 and all(ready(p) for p in ps)
                    and not any(p["spec"]["nodeName"] == lost.name for p in ps))

        wait_for(replaced, timeout=120, what="the lost host's pods replaced on the others")
        # Cut off, the host's own podman still runs its (now stale) pods.
        assert "_web" in lost.podman("ps", "--format", "{{.Names}}").stdout

        run("ip", "-n", lab.switch, "link", "set", lost.name, "up")
        wait_for(lambda: node_ready(lost.name), timeout=90, what=f"{lost.name} Ready again")
        wait_for(lambda: "_web" not in lost.podman("ps", "-a", "--format", "{{.Names}}").stdout, timeout=90,
                 what="the returned host's stale pods removed")
        assert len(web_pods(daemon)) == 6
    finally:
        tear_down(lab, agents, daemon)


def tear_down(lab: HostLab, agents: dict[str, NodeAgent], daemon: Daemon | None) -> None:
    """Agents and daemon stopped; the agents' kernel state (it outlives them on purpose) removed;
    the lab's hosts as the next test needs them: on the network, no pod on their podman."""
    for agent in agents.values():
        agent.stop()
    if daemon is not None and daemon.proc is not None and daemon.proc.poll() is None:
        daemon.stop()
    for agent in agents.values():
        agent.close()
    for host in lab.hosts:
        run("ip", "-n", lab.switch, "link", "set", host.name, "up", check=False)
        host.podman("pod", "rm", "--all", "--force", "--time", "0")
        host.podman("rm", "--all", "--force", "--time", "0")


def ready_node(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])
