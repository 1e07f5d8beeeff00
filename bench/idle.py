"""Figure 6: what the daemon costs while nothing changes, with 100 pods running.

The daemon (``bench/cluster.py``) runs one Deployment of ``pods`` replicas on a private
podman engine; once every replica is ready and a settle time has passed, its CPU time
(utime + stime of the process and of the children it waited for, from
``/proc/<pid>/stat``) and its resident memory (``VmRSS`` from ``/proc/<pid>/status``,
sampled every second) are read over ``window`` seconds. CPU is reported as a percentage
of one CPU.

Baseline: the podman service's own CPU over the same window (the daemon's heartbeats,
its event stream and its relists are its only client then), and again over a window with
the daemon stopped — the pods keep running, as they do when a kubelet stops — which is
what the engine costs by itself.

While the event stream is healthy the daemon relists every 900 s (``pleg.QUIET_RELIST_INTERVAL``,
after Kubernetes' Evented PLEG) and looks for lone containers hourly (``QUIET_LONE_SCAN_INTERVAL``),
both longer than the window, which would mostly show neither: the podman CPU of one relist
(the driver's ``list_pods``) and of one look (``list_lone_containers``) is measured apart and
their shares over those intervals are added to the engine's figure (counted twice if one fell
into the window: the figure errs high).
"""
from __future__ import annotations

import os
import statistics
import time

from bench.cluster import Cluster, deployment_yaml, wait_until
from bench.engine import HELLO_V1, PrivateEngine
from bench.figures import Figure, Results
from reconciler.kubelet.pleg import QUIET_LONE_SCAN_INTERVAL, QUIET_RELIST_INTERVAL
from runtime.podman import PodmanDriver

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and of its waited-for children (git runs, for instance)."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "; field 3 of stat is fields[0]
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime + cutime + cstime) / _TICKS


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def watch(pid: int, *, seconds: float) -> tuple[float, list[float]]:
    """CPU % of one CPU over ``seconds``, and RSS samples (MB) once a second."""
    cpu0, wall0 = cpu_seconds(pid), time.monotonic()
    samples = [rss_mb(pid)]
    while time.monotonic() - wall0 < seconds:
        time.sleep(min(1.0, max(0.0, seconds - (time.monotonic() - wall0))))
        samples.append(rss_mb(pid))
    return 100 * (cpu_seconds(pid) - cpu0) / (time.monotonic() - wall0), samples


def relist_cost(engine_pid: int, url: str, *, reps: int = 3) -> tuple[float, float]:
    """Median podman CPU seconds of one relist (``list_pods``) and of one look for lone containers."""
    driver = PodmanDriver(url=url)
    relists, looks = [], []
    try:
        for _ in range(reps):
            cpu0 = cpu_seconds(engine_pid)
            driver.list_pods()
            cpu1 = cpu_seconds(engine_pid)
            driver.list_lone_containers()
            relists.append(cpu1 - cpu0)
            looks.append(cpu_seconds(engine_pid) - cpu1)
    finally:
        driver.close()
    return statistics.median(relists), statistics.median(looks)


def run(*, results: Results, engine: PrivateEngine, pods: int, window: float, settle: float, command: str) -> None:
    engine_pid = engine.pid()
    if engine_pid is None:
        raise RuntimeError("cannot find the private podman service's process")
    cluster = Cluster(base=engine.base / "idle", engine_url=engine.url, network=engine.network()).start()
    try:
        started = time.monotonic()
        cluster.commit(files={"idle.yaml": deployment_yaml(name="idle", replicas=pods, image=HELLO_V1)},
                       message=f"{pods} pods")
        wait_until(lambda: cluster.rolled_out("idle", replicas=pods), timeout=600, what=f"{pods} pods ready",
                   interval=0.5)
        print(f"  idle: {pods} pods ready in {time.monotonic() - started:.1f} s; settling {settle:.0f} s, "
              f"then watching {window:.0f} s", flush=True)
        time.sleep(settle)
        engine_cpu0, wall0 = cpu_seconds(engine_pid), time.monotonic()
        daemon_cpu, rss = watch(cluster.pid, seconds=window)
        engine_cpu = 100 * (cpu_seconds(engine_pid) - engine_cpu0) / (time.monotonic() - wall0)
        if engine.running_pods() < pods:
            raise RuntimeError("pods stopped running during the idle window")
    finally:
        cluster.stop()
    relist, look = relist_cost(engine_pid, engine.url)
    relist_share = 100 * (relist / QUIET_RELIST_INTERVAL + look / QUIET_LONE_SCAN_INTERVAL)
    # The engine alone, same pods, no daemon (stopping it leaves the pods running).
    alone_window = min(window, 30.0)
    engine_cpu0, wall0 = cpu_seconds(engine_pid), time.monotonic()
    time.sleep(alone_window)
    engine_alone = 100 * (cpu_seconds(engine_pid) - engine_cpu0) / (time.monotonic() - wall0)
    engine.remove_all()

    results.add(Figure(key="idle.cpu", title=f"idle daemon CPU, {pods} pods, {window:.0f} s", value=daemon_cpu, unit="%",
                       goal=0.5, goal_text="< 0.5 %", note="% of one CPU; includes waited-for children",
                       command=command))
    results.add(Figure(key="idle.rss", title=f"idle daemon RSS (max of {len(rss)} samples)", value=max(rss), unit="MB",
                       goal=60.0, goal_text="< 60 MB", note=f"median {statistics.median(rss):.1f} MB",
                       command=command))
    results.add(Figure(key="idle.engine", title="podman service CPU while the daemon idles", value=engine_cpu + relist_share,
                       unit="%", baseline=engine_alone, baseline_title=f"(engine alone, {alone_window:.0f} s)",
                       goal=1.5, goal_text="<= 1.5x alone",
                       note=f"{engine_cpu:.2f} % over the window + {relist_share:.2f} %: one relist "
                            f"every {QUIET_RELIST_INTERVAL:.0f} s, one look for lone containers every "
                            f"{QUIET_LONE_SCAN_INTERVAL:.0f} s", command=command))
    results.add(Figure(key="idle.relist", title=f"podman CPU of one relist of {pods} pods", value=1000 * relist,
                       unit="ms", note=f"list_pods, every {QUIET_RELIST_INTERVAL:.0f} s while the event stream is "
                                       f"healthy; a look for lone containers: {1000 * look:.0f} ms", command=command))
