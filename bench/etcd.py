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
"""
from __future__ import annotations

import os
import signal
import statistics
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
        started = time.monotonic()
        cluster.commit(files={"one.yaml": None, "many.yaml": _many(deployments, replicas)},
                       message=f"{deployments} Deployments")
        want = deployments * replicas

        def all_pods() -> bool:
            return len(cluster.pods()) >= want

        wait_until(all_pods, timeout=900, what=f"{want} pods made", interval=5.0)
        made_s = time.monotonic() - started
        settle_s, settle_cpu = _settled(cluster.pid, timeout=120)
        if profile:
            os.kill(cluster.pid, signal.SIGUSR1)  # bench/profiled.py: the window starts
        cpu0 = cpu_seconds(cluster.pid)
        rss = [rss_mb(cluster.pid)]
        for _ in range(int(window)):
            time.sleep(1)
            rss.append(rss_mb(cluster.pid))
        idle_cpu = 100 * (cpu_seconds(cluster.pid) - cpu0) / window
        print(f"  etcd: {want} pods made in {made_s:.0f} s, settled {settle_s:.0f} s later (CPU then "
              f"{settle_cpu:.0f} %); RSS {max(rss):.0f} MB (before the commit {rss_before:.0f} MB); CPU while "
              f"sampling {idle_cpu:.1f} %", flush=True)
    finally:
        cluster.stop()
        cluster.cleanup()
        etcd.close()
    if profile and Path(profile).exists():
        results.profiles["etcd"] = Path(profile).read_text()
    results.add(Figure(key="etcd.idle-cpu", title=f"etcd: daemon CPU after the {deployments} Deployments settled",
                       value=idle_cpu, unit="%", note=f"{window:.0f} s; % of one CPU", command=command))
    results.add(Figure(key="etcd.notice", title=f"etcd: git commit -> reconcile starts ({reps} commits)",
                       value=median(notices), unit="ms", goal=NOTICE_GOAL_MS, goal_text="< 1 s",
                       samples=tuple(notices), note=f"max {max(notices):.0f} ms", command=command))
    results.add(Figure(key="etcd.rss", title=f"etcd: daemon RSS, {deployments} Deployments x {replicas} (max)",
                       value=max(rss), unit="MB", goal=RSS_GOAL_MB, goal_text=f"< {RSS_GOAL_MB:.0f} MB",
                       note=f"median {statistics.median(rss):.1f} MB; {want} pods made in {made_s:.0f} s",
                       command=command))
