#!/usr/bin/env python3
"""`reconciler` under ``tracemalloc``, for a benchmark that asks what holds the daemon's memory.

``SIGUSR2`` writes the live Python allocations, grouped by the line that made them and by
their three innermost frames, to ``$RECONCILER_BENCH_TRACEMALLOC`` (a text file, replaced on
each signal). Tracing costs memory and CPU of its own, so a run under it gives the *shares*
of the heap, never the RSS figure (``bench/etcd.py`` reports RSS only from untraced runs).
Why by hand: the standard library's ``tracemalloc`` is the tool; it only needs a trigger
inside the daemon's process, which this launcher adds without touching the daemon.
"""
from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
import tracemalloc
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)
FRAMES = 3
TOP = 40


def report() -> str:
    snapshot = tracemalloc.take_snapshot().filter_traces([
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    ])
    current, peak = tracemalloc.get_traced_memory()
    lines = [f"traced: {current / 2**20:.1f} MiB now, peak {peak / 2**20:.1f} MiB"]
    lines.append("-- by line")
    lines += [f"{s.size / 2**20:8.2f} MiB {s.count:9d}  {s.traceback[0]}" for s in snapshot.statistics("lineno")[:TOP]]
    lines.append(f"-- by the {FRAMES} innermost frames")
    for stat in snapshot.statistics("traceback")[:TOP]:
        lines.append(f"{stat.size / 2**20:8.2f} MiB {stat.count:9d}")
        lines += [f"          {frame}" for frame in stat.traceback]
    return "\n".join(lines) + "\n"


def main() -> None:
    path = Path(os.environ["RECONCILER_BENCH_TRACEMALLOC"])
    tracemalloc.start(FRAMES)

    def write() -> None:
        partial = path.with_name(path.name + ".part")
        partial.write_text(report())
        os.replace(partial, path)  # whole or absent: the bench waits for the file to appear

    def dump(*_: object) -> None:
        # Off the signal handler: a snapshot of a large heap takes seconds.
        threading.Thread(target=write, name="tracemalloc-report", daemon=True).start()

    signal.signal(signal.SIGUSR2, dump)
    sys.argv = ["reconciler", *sys.argv[1:]]
    sys.path.insert(0, ROOT)
    runpy.run_module("reconciler", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
