"""Every benchmark in one run: ``bench/run`` calls this (``bench/run --help``).

Order: the engine benchmarks first (commit → ready with the peer, rolling update,
commit noticed — ``bench/rollouts.py``), then the idle cost (``bench/idle.py``), on one
private podman engine and its bridge networks; then the Service data plane in scratch
network namespaces (``bench/nftables.py``: writing the ruleset; ``bench/proxy.py``:
traffic through a ClusterIP against straight to the pods); then the control plane on
the fake runtime (``bench/controlplane.py``). It prints each figure as it is measured,
then the whole table, and saves everything (figures, raw samples, pyinstrument profiles, the machine)
as JSON for ``docs/performance.md``.
"""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import Results, format_table  # noqa: E402

SECTIONS = ("rollouts", "idle", "nftables", "proxy", "controlplane", "nodes", "etcd")


@dataclass(frozen=True, kw_only=True)
class Settings:
    reps: int
    sizes: tuple[int, ...]
    roll_replicas: int
    idle_pods: int
    idle_window: float
    idle_settle: float
    cp_sizes: tuple[int, ...]
    cp_budget: float  # CPU seconds a full pass may take before it is sampled and estimated


FULL = Settings(reps=5, sizes=(1, 10, 30), roll_replicas=10, idle_pods=100, idle_window=60, idle_settle=10,
                cp_sizes=(100, 1000, 5000, 10000), cp_budget=20)
QUICK = Settings(reps=3, sizes=(1, 10, 30), roll_replicas=10, idle_pods=100, idle_window=20, idle_settle=5,
                 cp_sizes=(100, 1000, 10000), cp_budget=5)


def machine() -> dict:
    def run(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(), "cpu": model, "memory_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(), "os": run("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"),
        "python": platform.python_version(), "podman": run("podman", "--version"),
        "loadavg_start": open("/proc/loadavg").read().split()[:3],
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/run", description="Run every benchmark and print "
                                     "each figure with its baseline and ratio.")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and shorter windows (~25 min)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})")
    parser.add_argument("--reps", type=int, help="repetitions of each engine comparison (default 5, quick 3)")
    parser.add_argument("--json", default="",
                        help="where to save the results (default: bench/results/<date>-<time>-<sections>.json)")
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    reps = args.reps or settings.reps
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}.")
    if os.geteuid() != 0 and any(s in only for s in ("rollouts", "idle", "nftables", "proxy")):
        parser.error("the engine and data-plane benchmarks need root (podman bridge networks, network "
                     "namespaces, nftables).")
    command = "bench/run" + "".join(f" {shlex.quote(a)}" for a in sys.argv[1:])

    # A SIGTERM (kill, a CI timeout) must unwind like Ctrl-C does, so that every context manager
    # runs its teardown: the private engine, its pods and bridge networks, the daemons, their
    # nftables tables and fallback routes. The default SIGTERM kills at once and leaves them all.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    results = Results(machine=machine(), command=command)
    m = results.machine
    print(f"{m['date']}: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, kernel {m['kernel']}, {m['podman']}, "
          f"load average {' '.join(m['loadavg_start'])}", flush=True)
    started = time.monotonic()
    if "rollouts" in only or "idle" in only:
        from bench import idle, rollouts
        from bench.engine import HELLO_V1, HELLO_V2, PrivateEngine

        with PrivateEngine() as engine:
            engine.pull(HELLO_V1)
            engine.pull(HELLO_V2)
            if "rollouts" in only:
                print(f"== commit -> ready ({', '.join(map(str, settings.sizes))} replicas), peer, rolling update, "
                      f"commit noticed: {reps} repetitions", flush=True)
                rollouts.run(results=results, engine=engine, reps=reps, sizes=settings.sizes,
                             roll_replicas=settings.roll_replicas, command=command)
            if "idle" in only:
                print(f"== idle cost with {settings.idle_pods} pods", flush=True)
                idle.run(results=results, engine=engine, pods=settings.idle_pods, window=settings.idle_window,
                         settle=settings.idle_settle, command=command)
    if "nftables" in only:
        from bench import nftables

        print("== nftables ruleset: 1000 Services x 3 endpoints, one endpoint changed", flush=True)
        nftables.run(results, reps=reps, updates=20)
    if "proxy" in only:
        from bench import proxy

        print("== ClusterIP through nftables against straight to the pod IPs", flush=True)
        proxy.run(results, requests=3000 if args.quick else 6000, command=command)
    if "controlplane" in only:
        from bench import controlplane

        print(f"== control plane on the fake runtime: {', '.join(map(str, settings.cp_sizes))} Deployments", flush=True)
        controlplane.run(results=results, sizes=settings.cp_sizes, budget=settings.cp_budget, command=command)
        print("== control plane on a 3-member etcd: 1000 Deployments", flush=True)
        controlplane.run_etcd(results=results, command=command)
    if "nodes" in only:
        from bench import nodes

        print("== 50 node agents (in this process, the real HTTPS API) against one daemon", flush=True)
        nodes.run(results=results, nodes=50, pods_per_node=3, window=60.0, settle=settings.idle_settle,
                  command=command)
    if "etcd" in only:
        from bench import etcd

        print("== the daemon on a 3-member etcd: commit -> reconcile start, RSS with 1,000 Deployments", flush=True)
        etcd.run(results=results, reps=reps, deployments=1000, command=command)
    m["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    m["duration_s"] = round(time.monotonic() - started)

    print()
    print(format_table(results.figures))
    for note in results.notes:
        print(f"note: {note}")
    for name, text in results.profiles.items():
        print(f"\n== profile: {name}")
        print("\n".join(text.splitlines()[:45]))
    # By default beside the runs kept in the repository (docs/performance.md cites them by name).
    default = Path(__file__).resolve().parent / "results" / (
        f"{time.strftime('%Y-%m-%d-%H%M')}-{'all' if len(only) == len(SECTIONS) else '-'.join(only)}"
        f"{'-quick' if args.quick else ''}.json")
    path = Path(args.json) if args.json else default
    results.save(path)
    print(f"\n{m['duration_s']} s; load average at the end {' '.join(m['loadavg_end'])}; results saved to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
