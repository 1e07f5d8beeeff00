"""Two control-plane daemons on one 3-member etcd, one node joined with `reconciler node` (issue 14).

The leader (cpa) is killed with SIGKILL about a second into a 6-replica rolling update. Then:
the standby (cpb) leads within leaseDuration + 5 s; it finishes the rollout from what the store
says; exactly 6 pods run, all of the new revision; the history ties each revision to its commit;
requests through the Service every 20 ms never fail; and cpa started again is a standby.

Set-up, and why:
- etcd: a private 3-member cluster (tests/harness/etcd.py) on loopback.
- Both daemons have `localNode: false`, and the only node is a `reconciler node` process on the
  test's podman service, with both daemons' API addresses as its servers: in production each
  control-plane host would be a node too, but here the killed daemon's node would die with it.
  The daemons share one CA without an operator's help: cpa's, which it put in the store and cpb
  took from there (apiserver/certs.py), each daemon with its own server certificate; the node
  and the CLI pin one hash for both.
- The three "hosts" share this machine's kernel. Each daemon and the node agent keeps its own
  Service table (nftables), as each host would. A daemon killed with -9 leaves its table on
  purpose (Services keep answering on its host); on this shared kernel its frozen endpoints
  would then serve the other "hosts'" traffic too, so the test removes cpa's table right after
  the kill, as losing cpa's host would. Requests go from the host to the ClusterIP, through the
  standby's and the node's tables.
- leaseDuration 4s, so the takeover bound is 9 s.
"""
from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness.daemon_harness import (
    NFT_TABLE,
    REPO_ROOT,
    SERVICE_CIDR,
    Daemon,
    commit,
    free_port,
    http_get,
    init_repo,
    wait_for,
)
from tests.harness.etcd import EtcdCluster, skip_unless_etcd
from tests.harness.node_agents import NodeAgent, join_line
from tests.harness.podman_fixtures import network_settings
from tests.harness.traffic import RequestLoop

pytestmark = pytest.mark.podman

LEASE = 4.0
REPLICAS = 6

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 6
  selector: {{matchLabels: {{app: web}}}}
  strategy: {{type: RollingUpdate, rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
        - name: web
          image: {image}
          ports: [{{name: http, containerPort: 8080}}]
          readinessProbe:
            httpGet: {{path: /index.html, port: http}}
            periodSeconds: 1
            failureThreshold: 2
"""

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"""


class NotifySocket:
    """What a daemon tells systemd (sd_notify datagrams), as systemd would receive it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.statuses: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536).decode(errors="replace")
            except TimeoutError:
                continue
            except OSError:
                return
            self.statuses += [line[len("STATUS="):] for line in data.splitlines() if line.startswith("STATUS=")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


class ControlPlaneDaemon(Daemon):
    """The harness's daemon, with a config of its own: the etcd store, a name, an API address,
    no local node, and an nftables table per daemon (each daemon stands for a host)."""

    def __init__(self, *, name: str, table: str, settings: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(nodes={}, **kwargs)
        self.name = name
        self.table = table
        self.settings = settings
        self.notify: NotifySocket | None = None  # set: the daemon runs as under systemd (NOTIFY_SOCKET)

    def start(self) -> ControlPlaneDaemon:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps({**self.settings, "serviceCIDR": SERVICE_CIDR, "nftTable": self.table,
                                                "localNode": False}))
        args = [sys.executable, "-m", "reconciler", "daemon", "--config", str(self.config_path), "--repo",
                str(self.repo), "--branch", "main", "--state-dir", str(self.state_dir)]
        env = {**os.environ, **({"NOTIFY_SOCKET": str(self.notify.path)} if self.notify else {})}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
        wait_for(lambda: self.cli("status", "-o", "json").returncode == 0, timeout=60,
                 what=f"daemon {self.name}'s API")
        return self

    def plane(self) -> dict[str, Any]:
        return dict(self.json("status")["controlPlane"])


def remove_table(table: str) -> None:
    subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True, timeout=30, check=False)


SOLO = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: solo}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: solo}}}}
  template:
    metadata: {{labels: {{app: solo}}}}
    spec:
      containers: [{{name: web, image: {image}, ports: [{{containerPort: 8080}}]}}]
"""


def web_pods(daemon: Daemon) -> list[dict]:
    return [p for p in daemon.api("/api/v1/namespaces/default/pods?labelSelector=app%3Dweb")["items"]
            if not p["metadata"].get("deletionTimestamp")]


def is_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def test_the_standby_takes_over_a_rollout_when_the_leader_is_killed(tmp_path: Path, podman_node, images) -> None:
    skip_unless_etcd()
    podman_node.remove_everything()
    repo = tmp_path / "repo"
    v1 = init_repo(repo, {"web.yaml": DEPLOYMENT.format(image=images.hello_v1), "svc.yaml": SERVICE},
                   message="web v1")
    etcd = EtcdCluster(tmp_path / "etcd").start()
    store = {"etcd": {"endpoints": etcd.endpoints, "prefix": "/ha-test"}}
    port_a, port_b = free_port(), free_port()
    cpa = ControlPlaneDaemon(name="cpa", table=NFT_TABLE, repo=repo, state_dir=tmp_path / "cpa", settings={
        "store": store, "leaderElection": {"leaseDuration": f"{LEASE:g}s", "name": "cpa"},
        "api": {"listen": f"127.0.0.1:{port_a}"}})
    # No api.tls: cpb takes the CA cpa put in the store and issues its own server certificate.
    cpb = ControlPlaneDaemon(name="cpb", table=f"{NFT_TABLE}b", repo=repo, state_dir=tmp_path / "cpb", settings={
        "store": store, "leaderElection": {"leaseDuration": f"{LEASE:g}s", "name": "cpb"},
        "api": {"listen": f"127.0.0.1:{port_b}"}})
    agent: NodeAgent | None = None
    outage_results: RequestLoop | None = None
    try:
        cpa.start()
        wait_for(lambda: cpa.plane()["leader"] == "cpa", timeout=LEASE + 5, what="cpa to lead")
        cpb.notify = NotifySocket(tmp_path / "cpb-notify.sock")
        cpb.start()
        plane = wait_for(lambda: (p := cpb.plane()) and len(p["members"]) == 2 and p, timeout=LEASE + 5,
                         what="both daemons to be members")
        assert plane["store"] == "etcd" and plane["leader"] == "cpa" and plane["role"] == "standby"
        assert plane["members"] == [{"name": "cpa", "ready": True}, {"name": "cpb", "ready": True}]

        # The one node: a `reconciler node` with both daemons as its servers.
        join = join_line(cpa)
        assert join_line(cpb).ca_hash == join.ca_hash  # one CA, whichever daemon prints the line
        net = network_settings(podman_node.url)
        node_ip = str(next(ipaddress.ip_network(net["podCIDR"]).hosts()))
        agent = NodeAgent(directory=tmp_path, name="worker", token=join.token, settings={
            "servers": [f"https://127.0.0.1:{port_a}", f"https://127.0.0.1:{port_b}"], "caHash": join.ca_hash,
            "podCIDR": net["podCIDR"], "network": net["network"], "podmanURL": podman_node.url, "nodeIP": node_ip,
            "stateDir": str(tmp_path / "node-state"), "serviceCIDR": SERVICE_CIDR, "nftTable": f"rcnode{os.getpid()}"})
        agent.start()

        wait_for(lambda: len([p for p in web_pods(cpa) if is_ready(p)]) == REPLICAS, timeout=180,
                 what="6 ready v1 pods")
        svc = wait_for(lambda: (s := cpb.json("get", "svc", "web"))["spec"].get("clusterIP") and s, timeout=30,
                       what="a ClusterIP, as the standby sees it")
        ip = svc["spec"]["clusterIP"]
        wait_for(lambda: "v1" in http_get(f"http://{ip}:80/"), timeout=30, what="the Service to answer")

        with RequestLoop(f"http://{ip}:80/", pause=0.02) as results:
            results.wait_running(10)
            v2 = commit(repo, {"web.yaml": DEPLOYMENT.format(image=images.hello_v2)}, message="web v2")
            # About a second into the rollout: the new ReplicaSet exists and has started scaling.
            wait_for(lambda: any(p["spec"]["containers"][0]["image"].endswith("hello:v2") for p in web_pods(cpb)),
                     timeout=30, interval=0.05, what="the rollout to start")
            time.sleep(1.0)
            cpa.kill()
            remove_table(cpa.table)  # its host is gone with it (see the module docstring)
            killed = time.monotonic()

            plane = wait_for(lambda: (p := cpb.plane())["leader"] == "cpb" and p["role"] == "leader" and p,
                             timeout=LEASE + 5 + 2, interval=0.1, what="cpb to lead")
            took = time.monotonic() - killed
            assert took <= LEASE + 5, f"the standby took {took:.1f}s to lead"
            # systemd's STATUS says which it is: a standby naming its leader, then the leader.
            assert cpb.notify is not None
            assert any(s.startswith("standby (leader: cpa)") for s in cpb.notify.statuses), cpb.notify.statuses
            wait_for(lambda: cpb.notify and cpb.notify.statuses[-1].startswith("leader;"), timeout=10,
                     what="STATUS=leader… from cpb")
            # The dead daemon leaves the members once its lease has gone.
            wait_for(lambda: [m["name"] for m in cpb.plane()["members"]] == ["cpb"], timeout=LEASE + 3,
                     what="cpa to leave the members")

            def rolled_out() -> bool:
                pods = web_pods(cpb)
                return (len(pods) == REPLICAS and all(is_ready(p) for p in pods)
                        and all(p["spec"]["containers"][0]["image"].endswith("hello:v2") for p in pods))

            wait_for(rolled_out, timeout=240, what="cpb to finish the rollout to v2")
            wait_for(lambda: "v2" in results.last, timeout=20, what="v2 answering through the Service")
        assert results.failed == 0, f"{results.failed} failed requests: {results.errors[:5]}"
        assert results.ok > 100

        # Exactly 6 pods: none left over from the killed leader's half of the rollout.
        wait_for(lambda: len(cpb.api("/api/v1/namespaces/default/pods?labelSelector=app%3Dweb")["items"])
                 == REPLICAS, timeout=60, what="old pods to be gone")

        def engine_pods() -> list[str]:
            names = podman_node.cli("pod", "ps", "--format", "{{.Name}}", check=True).stdout.split()
            return [n for n in names if "web-" in n]

        # The engine too: the last old pod goes once its grace period is over; then exactly 6, all new.
        wait_for(lambda: len(engine_pods()) == REPLICAS, timeout=60, what="exactly 6 pods on the node")
        new_hash = {p["metadata"]["labels"]["pod-template-hash"] for p in web_pods(cpb)}
        assert len(new_hash) == 1 and all(f"web-{next(iter(new_hash))}-" in n for n in engine_pods()), engine_pods()
        history = cpb.json("rollout", "history", "deployment/web")["revisions"]
        assert [(r["revision"], r["commit"]) for r in history] == [(1, v1), (2, v2)], history

        # The old leader back: a standby, and cpb stays the leader.
        cpa.start()
        plane = wait_for(lambda: (p := cpa.plane()) and len(p["members"]) == 2 and p, timeout=LEASE + 5,
                         what="cpa to be a member again")
        assert plane["leader"] == "cpb" and plane["role"] == "standby"
        status = cpa.cli("status")
        assert "standby" in status.stdout and "leader cpb" in status.stdout, status.stdout
        assert cpb.plane()["role"] == "leader"
        # A standby does not sync or write commits; it says who does.
        refused = cpa.cli("sync")
        assert refused.returncode != 0 and "standby" in refused.stderr and "cpb" in refused.stderr, refused.stderr

        # One etcd member killed: the other two keep a quorum, and the next commit still rolls out.
        etcd.kill_member(0)
        try:
            commit(repo, {"solo.yaml": SOLO.format(image=images.hello_v1)}, message="solo, one etcd member down")
            wait_for(lambda: (cpb.json("get", "deployment", "solo").get("status") or {}).get("readyReplicas") == 1,
                     timeout=120, what="the solo Deployment to roll out with one etcd member down")
        finally:
            etcd.start_member(0)

        # etcd wholly unavailable for 30 s: pods and the Service keep serving, both daemons say so,
        # and a commit made meanwhile is applied once etcd is back.
        outage_results = RequestLoop(f"http://{ip}:80/", pause=0.02).start()
        etcd.stop()
        try:
            started = time.monotonic()
            for daemon in (cpa, cpb):
                plane = wait_for(lambda d=daemon: (p := d.plane()).get("message") and p["role"] == "standby" and p,
                                 timeout=LEASE + 5, what=f"{daemon.name} to report etcd unavailable, as a standby")
                assert "etcd" in plane["message"] and plane["leader"] is None, plane
            v3 = commit(repo, {"extra.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\n"
                                             "data: {k: v}\n"}, message="extra config during the etcd outage")
            time.sleep(max(0.0, 30.0 - (time.monotonic() - started)))
            assert len([p for p in web_pods(cpb) if is_ready(p)]) == REPLICAS  # from the cache
        finally:
            etcd.start()
        wait_for(lambda: cpa.plane()["leader"] in ("cpa", "cpb") and not cpa.plane().get("message"),
                 timeout=LEASE + 10, what="a leader once etcd is back")
        wait_for(lambda: cpb.json("status")["lastAppliedCommit"] == v3, timeout=60,
                 what="the commit made during the outage to be applied")
        assert cpa.json("get", "configmap", "extra")["data"] == {"k": "v"}
        outage_results.stop()
        assert outage_results.failed == 0, f"{outage_results.failed} failed: {outage_results.errors[:5]}"
        assert outage_results.ok > 100
    finally:
        if outage_results is not None:
            outage_results.stop()
        if agent is not None:
            agent.close()
        for daemon in (cpa, cpb):
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.stop(cleanup=False)
            remove_table(daemon.table)
            if daemon.notify is not None:
                daemon.notify.close()
        etcd.close()
        podman_node.remove_everything()
