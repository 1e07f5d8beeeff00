"""Figure: what 50 node agents cost the control plane (issue 16: "< 10 % of a CPU").

A real ``reconciler daemon`` (subprocess, SQLite store, ``localNode: false``, the HTTPS API
on a loopback port) and ``nodes`` node agents in this process, each one the product's own
agent minus its engine and kernel: ``reconciler.daemon.node.NodeProcess`` (registration,
the ``RemoteStore`` cache fed by the pod watch and the 2 s lists, ``NodeController``
heartbeats every 5 s, the kubelet writing its pods' status) over the CLI's HTTPS client
(``FailoverTransport``, pinned to the daemon's CA, one node token each, as `reconciler
node` is). Only two things differ, both below the API: pods run on the in-memory
``FakeDriver`` instead of podman, and the host's data plane (nftables, routes) is not
made — 50 agents share this host, and neither talks to the API (they read the cache).

One Deployment of ``pods_per_node × nodes`` replicas is committed; once every pod is
Running and Ready (the agents wrote their status), and a settle time has passed, the
daemon's CPU time (utime + stime of the process and its waited-for children, from
``/proc``; ``bench.idle.cpu_seconds``) is read over ``window`` seconds: the steady state
of heartbeats, node lists and pod watches. The roll-out to the nodes (bind, start, status
writes) is reported too, as the CPU the daemon spent from the commit to all pods ready.

Set ``RECONCILER_BENCH_PROFILE=/path/file`` to run the daemon under the sampling profiler of
``bench/profiled.py`` (every thread, by CPU used); the profile of the window is printed with
the results.
"""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import structlog

from bench.cluster import REPO_ROOT, Cluster, deployment_yaml, wait_until
from bench.figures import Figure, Results
from bench.idle import cpu_seconds, rss_mb
from reconciler.daemon.node import HEARTBEAT_INTERVAL, NodeProcess
from reconciler.daemon.nodeconfig import NodeAgentConfig
from reconciler.kubectl.client import ApiClient
from reconciler.kubectl.commands.node import FailoverTransport
from runtime.fake import FakeDriver

IMAGE = "bench.invalid/hello:v1"  # the fake engine has it; nothing is pulled
SERVICE_CIDR = "10.96.251.0/24"


class _NoDataPlane:
    """What ``NodeProcess.build`` needs of the Services' data plane, without a kernel table:
    a stopping pod's IP serves no Service here, so teardown never waits."""

    def still_serving(self, ip: str) -> bool:
        return False


class SimulatedNode(NodeProcess):
    """`reconciler node` on the fake engine and without the host's data plane (see the docstring)."""

    def _build_data_plane(self, pod_cidr: str) -> Any:
        return _NoDataPlane()


class NodesCluster(Cluster):
    """The daemon with no node of its own (``localNode: false``), its API on a loopback TCP port
    when ``port`` is given; ``settings`` go into its config too (``bench/etcd.py``: the store)."""

    def __init__(self, *, base: Path, port: int | None, table: str, settings: dict[str, Any] | None = None) -> None:
        super().__init__(base=base, engine_url="", network=None)  # type: ignore[arg-type]
        self.port = port
        self.table = table
        self.settings = dict(settings or {})
        self.config_path = base / "config.yaml"
        self.env: dict[str, str] = {}

    def start(self) -> NodesCluster:
        self.repo.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        (self.repo / "README").write_text("benchmark manifests\n")
        self.commit(files={}, message="empty")
        api = {"api": {"listen": f"127.0.0.1:{self.port}"}} if self.port is not None else {}
        self.config_path.write_text(json.dumps({"serviceCIDR": SERVICE_CIDR, "nftTable": self.table,
                                                "localNode": False, **api, **self.settings}))
        with open(self.base / "daemon.out", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *self.launcher(), "daemon", "--config", str(self.config_path), "--repo",
                 str(self.repo), "--branch", "main", "--state-dir", str(self.state_dir)],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, start_new_session=True,
                env={**os.environ, **self.env})
        wait_until(lambda: self._alive() and self.api.get("/status").get("lastAppliedCommit"),
                   timeout=120, what="the daemon's first sync", interval=0.1)
        return self

    def launcher(self) -> list[str]:
        if os.environ.get("RECONCILER_BENCH_PROFILE"):
            return [str(REPO_ROOT / "bench" / "profiled.py")]
        return ["-m", "reconciler"]

    def cleanup(self) -> None:
        """The daemon leaves its data-plane table on purpose when it stops; the bench removes it."""
        subprocess.run([sys.executable, "-m", "reconciler", "daemon", "--cleanup", "--config", str(self.config_path)],
                       capture_output=True, timeout=60, cwd=REPO_ROOT, check=False)
        subprocess.run(["nft", "delete", "table", "ip", self.table], capture_output=True, timeout=30, check=False)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def join(cluster: NodesCluster) -> tuple[str, str]:
    """A fresh node token and the CA's hash, from `reconciler node join-command`'s API call."""
    line = str(cluster.api.post("/join", {"ttl": None})["command"])
    match = re.search(r"--token (\S+) --ca-hash (\S+)", line)
    if match is None:
        raise RuntimeError(f"unexpected join command: {line}")
    return match.group(1), match.group(2)


def start_nodes(cluster: NodesCluster, *, count: int, state: Path) -> list[SimulatedNode]:
    nodes: list[SimulatedNode] = []
    stop = threading.Event()
    for i in range(count):
        token, ca_hash = join(cluster)
        name = f"sim{i:02d}"
        config = NodeAgentConfig(servers=(f"https://127.0.0.1:{cluster.port}",), token=token, ca_hash=ca_hash,
                                 name=name, node_ip="127.0.0.1", pod_cidr=None, state_dir=state / name,
                                 service_cidr=SERVICE_CIDR, nft_table="unused")
        transport = FailoverTransport(servers=config.servers, token=token, ca_hash=ca_hash)
        node = SimulatedNode(config, transport=transport,
                             driver=FakeDriver(hostname=name, images=(IMAGE,), record_calls=False))
        if not node.start(stop=stop):
            raise RuntimeError(f"node {name} did not start")
        nodes.append(node)
    return nodes


def pods_ready(client: ApiClient, want: int) -> Counter[str] | None:
    """Pods per node once ``want`` pods are Running and Ready, else None."""
    pods = client.get("/api/v1/namespaces/default/pods").get("items") or []
    ready = [p for p in pods if (p.get("status") or {}).get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in (p.get("status") or {}).get("conditions") or [])]
    if len(ready) < want:
        return None
    return Counter((p.get("spec") or {}).get("nodeName", "") for p in ready)


def _quiet_agents() -> None:
    """The 50 agents log as `reconciler node` does; in the bench's output only warnings matter."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def run(*, results: Results, nodes: int = 50, pods_per_node: int = 3, window: float = 60.0, settle: float = 10.0,
        command: str = "") -> None:
    _quiet_agents()
    base = Path(tempfile.mkdtemp(prefix="rcbench-nodes-"))
    cluster = NodesCluster(base=base, port=_free_port(), table=f"rcbnodes{os.getpid() % 100000}")
    profile = os.environ.get("RECONCILER_BENCH_PROFILE")
    if profile:
        cluster.env = {"RECONCILER_BENCH_PROFILE": profile}
    agents: list[SimulatedNode] = []
    try:
        cluster.start()
        started = time.monotonic()
        agents = start_nodes(cluster, count=nodes, state=base / "nodes")
        print(f"  nodes: {nodes} agents registered in {time.monotonic() - started:.1f} s", flush=True)
        replicas = nodes * pods_per_node
        cpu0, wall0 = cpu_seconds(cluster.pid), time.monotonic()
        cluster.commit(files={"fleet.yaml": deployment_yaml(name="fleet", replicas=replicas, image=IMAGE)},
                       message=f"{replicas} pods on {nodes} nodes")
        spread = wait_until(lambda: pods_ready(cluster.api, replicas), timeout=600,
                            what=f"{replicas} pods Running and Ready", interval=0.5)
        rollout_s = time.monotonic() - wall0
        rollout_cpu = cpu_seconds(cluster.pid) - cpu0
        print(f"  nodes: {replicas} pods ready in {rollout_s:.1f} s ({rollout_cpu:.1f} CPU s in the daemon); "
              f"per node {min(spread.values())}..{max(spread.values())} on {len(spread)} nodes; settling "
              f"{settle:.0f} s, then watching {window:.0f} s", flush=True)
        time.sleep(settle)
        if profile:
            os.kill(cluster.pid, signal.SIGUSR1)  # the window starts: bench/profiled.py clears its counts
        cpu0, wall0 = cpu_seconds(cluster.pid), time.monotonic()
        rss = [rss_mb(cluster.pid)]
        while time.monotonic() - wall0 < window:
            time.sleep(min(1.0, max(0.0, window - (time.monotonic() - wall0))))
            rss.append(rss_mb(cluster.pid))
        steady = 100 * (cpu_seconds(cluster.pid) - cpu0) / (time.monotonic() - wall0)
        down = [a.config.name for a in agents if not a.remote.connected]
        if down:
            raise RuntimeError(f"agents lost the API during the window: {down}")
    finally:
        for agent in agents:
            agent.stop()
        cluster.stop()
        cluster.cleanup()
    if profile and Path(profile).exists():
        results.profiles["nodes"] = Path(profile).read_text()
    print(f"  nodes: daemon {steady:.2f} % of a CPU over {window:.0f} s, RSS {max(rss):.0f} MB", flush=True)
    results.add(Figure(key="nodes.cpu", title=f"daemon CPU, {nodes} node agents, {replicas} pods, {window:.0f} s",
                       value=steady, unit="%", goal=10.0, goal_text="< 10 %",
                       note=f"% of one CPU; heartbeats every {HEARTBEAT_INTERVAL:g} s, node lists every 2 s, pod watches",
                       command=command))
    results.add(Figure(key="nodes.rollout", title=f"daemon CPU to bind and start {replicas} pods on {nodes} nodes",
                       value=rollout_cpu, unit="s", note=f"wall {rollout_s:.1f} s; CPU seconds, not %",
                       command=command))
    results.add(Figure(key="nodes.rss", title=f"daemon RSS with {nodes} node agents (max)", value=max(rss), unit="MB",
                       command=command))
