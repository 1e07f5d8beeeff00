"""The control-plane figures of the largest size only: RSS, and start-up from the store (issue 16).

``bench/controlplane.py`` builds the cluster and measures the passes; once they are done at
the largest size, ``largest`` closes the cluster's store and measures a **restarted daemon**:
open the store, build the control plane, its first (full) resync, the queues until idle.

On SQLite that runs in a fresh child process (``python -m bench.cpscale --startup-child``),
because the benchmark process is no daemon: it built the store by cloning and ran the fake
engine's whole history, and what those allocations leave in the allocator (and the
benchmark's own structures) would be counted as the control plane's RSS. The child holds
only what a restarted daemon holds: the imports, the store and the control plane, plus the
fake engine (podman's memory in a real daemon), which it rebuilds from the store before the
clock starts: every pod running, with the container ids and start times the stored statuses
name, as the engine that went on running would report them. Its RSS is read with the
imports only, with the fake engine, and once start-up is done; the RSS figure is the last
less what the fake engine added (at 30,000 pods the fake's records are hundreds of MB that a
real daemon leaves to podman). The etcd start-up (``run_etcd``) still runs in
process: the etcd store cannot be handed to a child as a path.

Standalone, ``python -m bench.cpscale --size 10000`` builds one size and measures only the
largest-size figures and the event-driven change (what issue 16 asks of 10,000 Deployments),
without the other sizes' passes: ``--profile`` prints the start-up's and one change's profiles,
``--tracemalloc N`` the child's N biggest allocation sites after start-up.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.figures import Figure, Results

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, kw_only=True)
class StartUp:
    wall: float  # seconds, open to idle
    cpu: float
    open_wall: float  # of which opening the store (reading it into the cache)
    open_cpu: float
    writes: int  # the heartbeat's Node write; anything more means the restart redid work
    rss_before: float = float("nan")  # MB, the child before opening the store (imports + fake engine)
    rss_after: float = float("nan")  # MB, the child once start-up is idle
    rss_imports: float = float("nan")  # MB, the child with its imports only
    rss_steps: str = ""  # MB after each step of the start-up
    profile: str = ""
    allocations: str = ""  # tracemalloc's biggest sites, if asked


def rss_mb() -> float:
    """This process's resident set now (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# The no-change pass's goals: docs/performance.md's at 1,000, issue 16's at 10,000.
NOCHANGE_GOALS = {1000: 100.0, 10000: 300.0}
RSS_GOAL_MB = 500.0  # issue 16, at 10,000 Deployments
STARTUP_GOAL_S = 10.0  # issue 16, at 10,000 Deployments


def goal_text(goal: float | None, unit: str = "ms") -> str:
    return f"< {goal:g} {unit}" if goal is not None else ""


def startup_in_child(cluster: Any, *, profile: bool, tracemalloc_top: int = 0) -> StartUp:
    """Close the cluster's control plane and store, and measure a restarted daemon in a fresh process."""
    clock_now = cluster.clock.now()
    if cluster.manager is not None:
        cluster.manager.stop()
        cluster.manager.close()
        cluster.manager = None
    cluster.store.close()
    with tempfile.NamedTemporaryFile(prefix="rb-cp-startup-", suffix=".json", dir="/tmp", delete=False) as f:
        out = Path(f.name)
    try:
        command = [sys.executable, "-m", "bench.cpscale", "--startup-child", str(cluster.tmp), "--out", str(out),
                   "--clock", repr(clock_now)]
        if profile:
            command.append("--profile")
        if tracemalloc_top:
            command += ["--tracemalloc", str(tracemalloc_top)]
        subprocess.run(command, cwd=REPO, check=True)
        up = StartUp(**{k: v for k, v in json.loads(out.read_text()).items() if k != "changes"})
    finally:
        out.unlink(missing_ok=True)
    # The benchmark's cluster reads its store again (close() and any later step expect one).
    cluster.store = cluster._open_store(cluster.clock)
    return up


def largest(cluster: Any, *, size: int, results: Results, where: str, command: str, profiler: Any,
            store_name: str = "SQLite", tracemalloc_top: int = 0) -> StartUp:
    """The figures of the largest size only: RSS and start-up from the store (see the module docstring)."""
    gc.collect()
    bench_rss = rss_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if store_name == "SQLite":
        # The figure is an unprofiled start-up; a profile, if asked, comes from a second one (the
        # profiler's own cost, ~1,000 samples of a deep stack, had made the figure 10-20 % higher).
        up = startup_in_child(cluster, profile=False, tracemalloc_top=tracemalloc_top)
        if profiler is not None:
            up = dataclasses.replace(up, profile=startup_in_child(cluster, profile=True).profile)
        # The fake engine's records are podman's memory in a real daemon, not the control plane's.
        engine = up.rss_before - up.rss_imports
        rss = up.rss_after - engine
        print(f"  control plane at {where}: RSS {rss:,.0f} MB after start-up in a fresh process, without the "
              f"{engine:,.0f} MB of the fake engine ({up.rss_after:,.0f} MB with it; the imports "
              f"{up.rss_imports:,.0f} MB; the benchmark "
              f"process: {bench_rss:,.0f} MB, peak {peak:,.0f} MB); start-up from the {store_name} store "
              f"{up.wall:.1f} s wall, {up.cpu:.1f} s CPU (opening the store {up.open_wall:.1f} s), "
              f"{up.writes} writes; RSS MB after each step: {up.rss_steps}", flush=True)
    else:
        up = cluster.startup(profiler=profiler)
        rss = rss_mb()
        print(f"  control plane at {where}: start-up from the {store_name} store {up.wall:.1f} s wall, "
              f"{up.cpu:.1f} s CPU (opening the store {up.open_wall:.1f} s), {up.writes} writes", flush=True)
    key = str(size)
    if store_name == "SQLite":
        results.add(Figure(key=f"cp.rss.{key}", title=f"control plane RSS, {where}", value=rss, unit="MB",
                           goal=RSS_GOAL_MB if size == 10000 else None,
                           goal_text=goal_text(RSS_GOAL_MB if size == 10000 else None, "MB"),
                           note=f"VmRSS of a fresh process after start-up from the store, less what the "
                                f"fake engine added before it ({engine:,.0f} MB; {up.rss_after:,.0f} MB with "
                                f"it; the imports {up.rss_imports:,.0f} MB); the benchmark process that built "
                                f"it: {bench_rss:,.0f} MB, peak {peak:,.0f} MB",
                           command=command))
    goal = STARTUP_GOAL_S if size == 10000 else None
    results.add(Figure(key=f"cp.startup.{store_name.lower()}.{key}", value=up.wall, unit="s",
                       title=f"start-up from the store ({store_name}): open, first full resync, idle; {where}",
                       goal=goal, goal_text=goal_text(goal, "s"),
                       note=f"wall; {up.cpu:.1f} s CPU; opening the store {up.open_wall:.1f} s wall "
                            f"({up.open_cpu:.1f} s CPU); {up.writes} writes (the heartbeat)", command=command))
    if up.profile:
        results.profiles[f"startup.{store_name.lower()}.{key}"] = up.profile
    elif profiler is not None and store_name != "SQLite":
        text = profiler.output_text(unicode=False, color=False, show_all=False)
        results.profiles[f"startup.{store_name.lower()}.{key}"] = text
    return up


# -- the child: a restarted daemon ---------------------------------------------------------------
class _NoObjects:
    """The store ``build_request`` reads ConfigMaps, Secrets and Services from: the benchmark's
    pods use none (and the engine's copy of the request does not change the pods' status)."""

    def get(self, kind: str, namespace: str, name: str) -> None:
        return None

    def list(self, kind: str, namespace: str | None = None) -> list[Any]:
        return []


def restore_engine(db_path: Path, driver: Any, *, node: str, volumes: Path) -> None:
    """Give the fake engine every pod of ``node`` running, as the engine that went on running
    while the daemon was down reports it: the container ids and start times the stored statuses
    name. (The fake numbers its ids in creation order, so they are set afterwards; this reaches
    into the fake's records, which only a benchmark may.) The pods are read from the SQLite file
    one row at a time, not through a Store: a second copy of the whole store, freed before the
    measured start-up, would leave the allocator holding its pages, counted as the engine's."""
    import sqlite3

    from reconciler.kubelet.podrequest import build_request, engine_labels

    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        for (data,) in db.execute("SELECT data FROM objects WHERE kind = 'Pod'"):
            pod = json.loads(data)
            if (pod.get("spec") or {}).get("nodeName") != node:
                continue
            request = build_request(pod=pod, store=_NoObjects(), volumes_dir=volumes, labels=engine_labels(pod, node=node))
            driver.create_pod(request)
            driver.start_pod(namespace=request.namespace, name=request.name)
            record = driver._pods[(request.namespace, request.name)]
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                container = record.containers.get(cs.get("name"))
                if container is None:
                    continue
                if cs.get("containerID", "").startswith("podman://"):
                    container.container_id = cs["containerID"].removeprefix("podman://")
                started = ((cs.get("state") or {}).get("running") or {}).get("startedAt")
                if started:
                    container.started_at = started
            record.cached = None
    finally:
        db.close()
    driver._list_cache = None


def changes_after_startup(store: Any, manager: Any, *, count: int, profile: bool) -> dict[str, Any]:
    """The child's extra: ``count`` event-driven changes (one Deployment's image each, its whole
    rollout, the queues until idle) after a warm-up one, on the restarted control plane. CPU ms
    each, and the profile of the first counted one."""
    from bench.controlplane import IMAGE_V1, IMAGE_V2

    def change(index: int) -> float:
        def mutate(cur: dict) -> dict:
            container = cur["spec"]["template"]["spec"]["containers"][0]
            container["image"] = IMAGE_V2 if container["image"] == IMAGE_V1 else IMAGE_V1
            return cur

        gc.collect()
        started = time.process_time()
        store.update("Deployment", "default", f"app-{index:05d}", mutate)
        manager.run_until_idle()
        return time.process_time() - started

    warmup = change(9999)
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002)
    seconds = []
    for i in range(count):
        if profiler is not None and i == 0:
            profiler.start()
        seconds.append(change(9998 - i))
        if profiler is not None and i == 0:
            profiler.stop()
    return {"warmup_ms": warmup * 1000, "change_ms": [x * 1000 for x in seconds],
            "change_profile": profiler.output_text(unicode=False, color=False, show_all=False) if profiler else ""}


def child(tmp: Path, *, clock_start: float, profile: bool, tracemalloc_top: int, changes: int = 0) -> dict[str, Any]:
    from bench.controlplane import IMAGE_V1, IMAGE_V2, NODE, _manager, _quiet_logs
    from reconciler.core.clock import ManualClock
    from reconciler.daemon import collector
    from reconciler.store.store import Store
    from runtime.fake import FakeDriver

    _quiet_logs()
    gc.collect()
    rss_imports = rss_mb()
    clock = ManualClock(start=clock_start)
    driver = FakeDriver(clock=clock.now, record_calls=False, images=[IMAGE_V1, IMAGE_V2])
    restore_engine(tmp / "store.db", driver, node=NODE, volumes=tmp / "volumes")
    gc.collect()
    rss_before = rss_mb()
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.01)
    if tracemalloc_top:
        import tracemalloc

        tracemalloc.start(8)
    if profiler is not None:
        profiler.start()
    wall, cpu = time.perf_counter(), time.process_time()
    steps: list[tuple[str, float]] = []  # (step, RSS MB after it): where the resident set grows
    # As the daemon starts (daemon/collector.py): the cyclic collector paused, then one full
    # collection and a freeze, inside the clock.
    with collector.start_up():
        store = Store(tmp / "store.db", clock=clock.now)
        opened = time.perf_counter() - wall, time.process_time() - cpu
        steps.append(("open the store", rss_mb()))
        rv = store.resource_version
        manager = _manager(store, clock, driver, tmp / "volumes")
        steps.append(("build the control plane", rss_mb()))
        manager.resync()
        steps.append(("first resync", rss_mb()))
        manager.run_until_idle()
        steps.append(("queues until idle", rss_mb()))
    result: dict[str, Any] = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                              "open_wall": opened[0], "open_cpu": opened[1], "writes": store.resource_version - rv}
    if profiler is not None:
        profiler.stop()
        result["profile"] = profiler.output_text(unicode=False, color=False, show_all=False)
    gc.collect()
    result.update(rss_imports=rss_imports, rss_before=rss_before, rss_after=rss_mb(),
                  rss_steps=", ".join(f"{step} {mb:,.0f}" for step, mb in steps))
    if tracemalloc_top:
        import tracemalloc

        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()
        lines = [f"traced now {sum(s.size for s in snapshot.statistics('filename')) / 2**20:,.1f} MB"]
        for stat in snapshot.statistics("traceback")[:tracemalloc_top]:
            lines.append(f"{stat.size / 2**20:8.1f} MB {stat.count:>9,} blocks")
            lines += [f"           {frame.filename.removeprefix(str(REPO) + '/')}:{frame.lineno}"
                      for frame in list(stat.traceback)[-4:]]
        result["allocations"] = "\n".join(lines)
    if changes:
        result["changes"] = changes_after_startup(store, manager, count=changes, profile=profile)
    manager.stop()
    manager.close()
    store.close()
    return result


# -- standalone: one size, the largest-size figures only ---------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpscale", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=10000, help="Deployments (3 pods each)")
    parser.add_argument("--reps", type=int, default=3, help="event-driven changes (median)")
    parser.add_argument("--profile", action="store_true", help="print the start-up's and one change's profiles")
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="N", help="the child's N biggest sites")
    parser.add_argument("--keep", action="store_true",
                        help="keep the built store and print its directory (for --startup-child runs)")
    parser.add_argument("--startup-child", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--changes", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--clock", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.startup_child:
        result = child(Path(args.startup_child), clock_start=args.clock, profile=args.profile,
                       tracemalloc_top=args.tracemalloc, changes=args.changes)
        Path(args.out).write_text(json.dumps(result))
        if args.changes:  # run by hand on a --keep'd store: say what the changes cost
            changes = result["changes"]
            print(f"warm-up change {changes['warmup_ms']:.1f} ms, then {[round(x, 1) for x in changes['change_ms']]} "
                  f"ms CPU\n{changes['change_profile']}")
        return 0
    import shutil

    from bench.controlplane import Cluster, _quiet_logs
    from bench.figures import median

    _quiet_logs()
    command = "python -m bench.cpscale" + "".join(f" {a}" for a in sys.argv[1:])
    print(f"load average {os.getloadavg()}", flush=True)
    results = Results()
    tmp = Path(tempfile.mkdtemp(prefix="rb-cpscale-", dir="/tmp"))
    try:
        cluster = Cluster(deployments=args.size, tmp=tmp / "cluster")
        try:
            built = cluster.build()
            print(f"  built {args.size} Deployments by cloning in {built:.1f} s", flush=True)
            events = []
            prof = None
            for index in range(args.reps + 1):  # the first one seeds the scheduler's usage: not counted
                if args.profile and index == 1:
                    from pyinstrument import Profiler

                    prof = Profiler(interval=0.0005)
                events.append(cluster.event_driven_change(index, profiler=prof if index == 1 else None))
                if not cluster.rollout_done(index):
                    raise RuntimeError("the single change did not complete its rollout")
            print(f"  event-driven change: {[round(e[0] * 1000, 1) for e in events]} ms CPU (the first seeds "
                  f"the scheduler), median of the rest {median([e[0] for e in events[1:]]) * 1000:.1f} ms, "
                  f"{events[-1][1]} writes", flush=True)
            up = largest(cluster, size=args.size, results=results, where=f"{args.size} Deployments",
                         command=command, profiler=object() if args.profile else None,
                         tracemalloc_top=args.tracemalloc)
            if prof is not None:
                print("\n== profile: one change\n" + prof.output_text(unicode=False, color=False, show_all=False))
            if up.profile:
                print("\n== profile: start-up\n" + up.profile)
            if up.allocations:
                print("\n== allocations after start-up\n" + up.allocations)
        finally:
            cluster.close()
    finally:
        if args.keep:
            print(f"kept: python -m bench.cpscale --startup-child {tmp / 'cluster'} --out OUT.json --clock "
                  f"{cluster.clock.now()!r} [--profile] [--tracemalloc N] [--changes N]")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average at the end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
