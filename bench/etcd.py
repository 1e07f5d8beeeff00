"""Figures of issue 14 on etcd: commit → reconcile start, and the daemon's RSS at 1,000 Deployments.

A real 3-member etcd on loopback (``tests/harness/etcd.py``), a real ``reconciler daemon``
with ``store: {etcd: ...}`` (it leads alone: leader election on an etcd lease) and a local
Git repository, ``localNode: false`` so nothing runs on podman:

1. Commit → reconcile start: ``reps`` commits, each changing one small Deployment, timed
   from just before ``git commit`` to the apply starting, from the daemon's JSON log
   (``Cluster.reconcile_started``, as ``bench/rollouts.py`` measures it on SQLite). Goal < 1 s.
2. RSS: one commit of 1,000 Deployments (3 replicas each). The control plane makes the
   1,000 ReplicaSets and 3,000 pods, which stay Pending (no node to bind them to). Once the
   pods all exist and the daemon's CPU has settled (under 10 % of a CPU over 5 s), ``VmRSS``
   is sampled once a second for ``window`` seconds; the figure is the largest. Goal < 150 MB.
   The daemon's CPU seconds from that commit until it settled are reported too (CPU time is
   robust on a loaded machine, where wall-clock figures are not).

``RECONCILER_BENCH_PROFILE=/path`` runs the daemon under ``bench/profiled.py`` (CPU over the
sampling window); ``RECONCILER_BENCH_TRACEMALLOC=/path`` under ``bench/tracemalloced.py``,
which writes what holds the Python heap once the daemon has settled (its RSS is then not the
figure: tracing costs memory of its own).
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.cluster import deployment_yaml, wait_until
from bench.figures import Figure, Results, median
from bench.idle import cpu_seconds, rss_mb
from bench.nodes import NodesCluster

NOTICE_GOAL_MS = 1000.0
RSS_GOAL_MB = 150.0
IMAGE = "bench.invalid/hello:v1"  # never pulled: no node runs these pods


def _many(count: int, replicas: int) -> str:
    return "---\n".join(deployment_yaml(name=f"d{i:04d}", replicas=replicas, image=IMAGE) for i in range(count))


def _settled(pid: int, *, timeout: float) -> tuple[float, float]:
    """Wait until the daemon uses under 10 % of a CPU over 5 s: (seconds it took, its last CPU %)."""
    started = time.monotonic()
    used = float("nan")
    while time.monotonic() - started < timeout:
        cpu0 = cpu_seconds(pid)
        time.sleep(5)
        used = (cpu_seconds(pid) - cpu0) / 5
        if used < 0.10:
            break
    return time.monotonic() - started, 100 * used


def _pods_in_etcd(endpoints: list[str], *, prefix: str, namespace: str) -> int:
    """How many Pods the store holds, counted by etcd itself (``etcdctl get --keys-only``: its answer carries the count).

    Not through the daemon's API: a full Pod list every 5 s while 3,000 pods are made had the
    measured daemon decode and encode every pod each time, whose transient memory its RSS kept
    (the API's own cost is not the figure here)."""
    out = subprocess.run(["etcdctl", f"--endpoints={','.join(endpoints)}", "get", "--prefix", "--keys-only",
                          "-w", "json", f"{prefix}/registry/Pod/{namespace}/"],
                         capture_output=True, text=True, timeout=30, check=True, env={**os.environ, "ETCDCTL_API": "3"})
    return int(json.loads(out.stdout).get("count") or 0)


def _heap_report(pid: int, path: Path) -> None:
    """Ask bench/tracemalloced.py for its report and wait for it (a big heap takes a while)."""
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR2)
    wait_until(path.exists, timeout=300,
               what="the daemon's tracemalloc report", interval=1.0)
    print(f"  etcd: tracemalloc report in {path}", flush=True)


def run(*, results: Results, reps: int = 5, deployments: int = 1000, replicas: int = 3, window: float = 20.0,
        command: str = "") -> None:
    from tests.harness.etcd import EtcdCluster, etcd_installed

    if not etcd_installed():
        results.notes.append("etcd: etcd-server is not installed (the README's set-up); section skipped")
        print("  etcd: etcd-server is not installed; skipped", flush=True)
        return
    base = Path(tempfile.mkdtemp(prefix="rcbench-etcd-"))
    etcd = EtcdCluster(base / "etcd").start()
    store = {"store": {"etcd": {"endpoints": etcd.endpoints, "prefix": "/bench"}}}
    cluster = NodesCluster(base=base, port=None, table=f"rcbetcd{os.getpid() % 100000}", settings=store)
    profile = os.environ.get("RECONCILER_BENCH_PROFILE")  # as in bench/nodes.py
    if profile:
        cluster.env = {"RECONCILER_BENCH_PROFILE": profile}
    heap = os.environ.get("RECONCILER_BENCH_TRACEMALLOC")
    if heap:
        cluster.env = {"RECONCILER_BENCH_TRACEMALLOC": heap}
        cluster.launcher = lambda: [str(Path(__file__).resolve().parent / "tracemalloced.py")]  # type: ignore[method-assign]
    try:
        cluster.start()
        notices = []
        for i in range(reps):
            # One at a time: each waits for its own "commit applied" line (its pods stay Pending,
            # so the commit never turns healthy and lastAppliedCommit does not move).
            commit = cluster.commit(files={"one.yaml": deployment_yaml(name="one", replicas=1, image=f"{IMAGE}-{i}")},
                                    message=f"one, change {i}")
            notices.append(cluster.reconcile_started(commit, timeout=60)[0] * 1000)
        print(f"  etcd: commit -> reconcile start {median(notices):.0f} ms (median of {reps}; "
              f"max {max(notices):.0f} ms)", flush=True)

        rss_before = rss_mb(cluster.pid)
        cpu_start = cpu_seconds(cluster.pid)
        started = time.monotonic()
        cluster.commit(files={"one.yaml": None, "many.yaml": _many(deployments, replicas)},
                       message=f"{deployments} Deployments")
        want = deployments * replicas

        def all_pods() -> bool:
            return _pods_in_etcd(etcd.endpoints, prefix="/bench", namespace="default") >= want

        wait_until(all_pods, timeout=900, what=f"{want} pods made", interval=5.0)
        made_s = time.monotonic() - started
        settle_s, settle_cpu = _settled(cluster.pid, timeout=120)
        # CPU time, robust on a loaded machine where wall-clock figures are not.
        made_cpu = cpu_seconds(cluster.pid) - cpu_start
        if profile:
            os.kill(cluster.pid, signal.SIGUSR1)  # bench/profiled.py: the window starts
        cpu0 = cpu_seconds(cluster.pid)
        rss = [rss_mb(cluster.pid)]
        for _ in range(int(window)):
            time.sleep(1)
            rss.append(rss_mb(cluster.pid))
        idle_cpu = 100 * (cpu_seconds(cluster.pid) - cpu0) / window
        if heap:
            _heap_report(cluster.pid, Path(heap))
        print(f"  etcd: {want} pods made in {made_s:.0f} s, settled {settle_s:.0f} s later (CPU then "
              f"{settle_cpu:.0f} %); daemon CPU {made_cpu:.0f} s from the commit to settled; RSS {max(rss):.0f} MB "
              f"(before the commit {rss_before:.0f} MB); CPU while sampling {idle_cpu:.1f} %", flush=True)
    finally:
        cluster.stop()
        cluster.cleanup()
        etcd.close()
    if profile and Path(profile).exists():
        results.profiles["etcd"] = Path(profile).read_text()
    results.add(Figure(key="etcd.idle-cpu", title=f"etcd: daemon CPU after the {deployments} Deployments settled",
                       value=idle_cpu, unit="%", note=f"{window:.0f} s; % of one CPU", command=command))
    results.add(Figure(key="etcd.made-cpu", title=f"etcd: daemon CPU, the {deployments} Deployments' commit to settled",
                       value=made_cpu, unit="s", note=f"{want} pods made in {made_s:.0f} s", command=command))
    results.add(Figure(key="etcd.notice", title=f"etcd: git commit -> reconcile starts ({reps} commits)",
                       value=median(notices), unit="ms", goal=NOTICE_GOAL_MS, goal_text="< 1 s",
                       samples=tuple(notices), note=f"max {max(notices):.0f} ms", command=command))
    results.add(Figure(key="etcd.rss", title=f"etcd: daemon RSS, {deployments} Deployments x {replicas} (max)",
                       value=max(rss), unit="MB", goal=RSS_GOAL_MB, goal_text=f"< {RSS_GOAL_MB:.0f} MB",
                       note=f"median {statistics.median(rss):.1f} MB; {want} pods made in {made_s:.0f} s",
                       command=command))
