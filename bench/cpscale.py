"""The control-plane figures of the largest size only: RSS, and start-up from the store (issue 16).

``bench/controlplane.py`` builds the cluster and measures the passes; once they are done at
the largest size, ``largest`` reads the process's RSS (the store's cache, the controllers'
memory, the fake engine's records of every pod, and what the clone build left in the
allocator) and has the cluster close and reopen its store as a restarted daemon does
(``Cluster.startup``): open the store, build the control plane, its first (full) resync,
the queues until idle. Each figure is printed with its goal.
"""
from __future__ import annotations

import gc
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.figures import Figure, Results


@dataclass(frozen=True, kw_only=True)
class StartUp:
    wall: float  # seconds, open to idle
    cpu: float
    open_wall: float  # of which opening the store (reading it into the cache)
    open_cpu: float
    writes: int  # the heartbeat's Node write; anything more means the restart redid work


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


def largest(cluster: Any, *, size: int, results: Results, where: str, command: str, profiler: Any,
             store_name: str = "SQLite") -> None:
    """The figures of the largest size only: RSS once the passes are done, and start-up from the store."""
    gc.collect()
    rss = rss_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    up = cluster.startup(profiler=profiler)
    after = rss_mb()
    print(f"  control plane at {where}: RSS {rss:,.0f} MB after the passes ({after:,.0f} MB after a restart; "
          f"peak {peak:,.0f} MB while building); start-up from the {store_name} store {up.wall:.1f} s wall, "
          f"{up.cpu:.1f} s CPU (opening the store {up.open_wall:.1f} s), {up.writes} writes", flush=True)
    key = str(size)
    if store_name == "SQLite":
        results.add(Figure(key=f"cp.rss.{key}", title=f"control plane RSS, {where}", value=rss, unit="MB",
                           goal=RSS_GOAL_MB if size == 10000 else None,
                           goal_text=goal_text(RSS_GOAL_MB if size == 10000 else None, "MB"),
                           note=f"VmRSS after the passes; {after:,.0f} MB after the restart below; peak "
                                f"{peak:,.0f} MB (the clone build)", command=command))
    goal = STARTUP_GOAL_S if size == 10000 else None
    results.add(Figure(key=f"cp.startup.{store_name.lower()}.{key}", value=up.wall, unit="s",
                       title=f"start-up from the store ({store_name}): open, first full resync, idle; {where}",
                       goal=goal, goal_text=goal_text(goal, "s"),
                       note=f"wall; {up.cpu:.1f} s CPU; opening the store {up.open_wall:.1f} s wall "
                            f"({up.open_cpu:.1f} s CPU); {up.writes} writes (the heartbeat)", command=command))
    if profiler is not None:
        text = profiler.output_text(unicode=False, color=False, show_all=False)
        results.profiles[f"startup.{store_name.lower()}.{key}"] = text
