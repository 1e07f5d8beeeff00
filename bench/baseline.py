"""Baseline: the same pod work done by hand through podman's REST API — the physical limit.

Two workloads, both on a ``PrivateEngine`` with the raw client (see ``bench/engine.py``):

- ``create_pods``: create and start N pods, each with its static IP on the bridge
  network the daemon's pods use (nothing published), with ``workers`` requests in
  flight (default 8: the daemon's node agent runs 8 workers per node, so both sides
  may use the engine equally in parallel).
  Timed from the first request to the last pod running (no probes: a running
  container is what Ready means for the daemon too).
- ``replace_pods``: replace N running pods one at a time — start a new pod, then stop
  (SIGTERM) and remove an old one — which is what a rolling update with maxSurge 1,
  maxUnavailable 0 does. Returns when the last new pod runs and when the last old
  pod is gone.

Standalone: ``python3 bench/baseline.py [--pods 10] [--workers 8]`` (root, local registry).
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.engine import HELLO_V1, HELLO_V2, BenchNetwork, HandPod, PrivateEngine  # noqa: E402

# Pods by hand share the daemon's bridge network, in a subnet of their own on it
# (BenchNetwork.hand_subnet, .128/25: its gateway is .129), which the daemon's pod CIDR (.0/25)
# never reaches.
HAND_FIRST, HAND_LAST = 150, 254
NODE_AGENT_WORKERS = 8


@dataclass(frozen=True, kw_only=True)
class Replacement:
    """Timings of one one-at-a-time replacement of N pods (seconds from the start)."""

    last_new_running: float  # the rollout's "complete": every new pod runs
    last_old_gone: float  # every old pod is also removed


def hand_pods(net: BenchNetwork, count: int, *, prefix: str) -> list[HandPod]:
    return [HandPod(name=f"{prefix}{i}", ip=net.ip(HAND_FIRST + i), network=net.name) for i in range(count)]


def create_pods(engine: PrivateEngine, pods: list[HandPod], *, image: str = HELLO_V1,
                workers: int = NODE_AGENT_WORKERS) -> float:
    """Create and start ``pods``; seconds until all run."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(pods)))) as pool:
        list(pool.map(lambda p: engine.create_and_start(p, image=image), pods))
    return time.perf_counter() - started


def remove_pods(engine: PrivateEngine, pods: list[HandPod]) -> None:
    with ThreadPoolExecutor(max_workers=NODE_AGENT_WORKERS) as pool:
        list(pool.map(engine.stop_and_remove, pods))


def replace_pods(engine: PrivateEngine, old: list[HandPod], *, image: str, prefix: str) -> tuple[Replacement, list[HandPod]]:
    """Replace ``old`` one at a time with pods of ``image``; returns the timings and the new pods.

    A new pod takes the lowest IP no live pod holds, as the daemon's scheduler does.
    """
    network = old[0].network
    subnet = old[0].ip.rsplit(".", 1)[0]
    used = {p.ip for p in old}
    free = [f"{subnet}.{i}" for i in range(HAND_FIRST, HAND_LAST + 1) if f"{subnet}.{i}" not in used]
    new: list[HandPod] = []
    started = time.perf_counter()
    last_new = 0.0
    for n, victim in enumerate(old):
        pod = HandPod(name=f"{prefix}{n}", ip=free.pop(0), network=network)
        engine.create_and_start(pod, image=image)
        last_new = time.perf_counter() - started
        new.append(pod)
        engine.stop_and_remove(victim)
        free.append(victim.ip)
        free.sort(key=lambda ip: int(ip.rsplit(".", 1)[1]))
    return Replacement(last_new_running=last_new, last_old_gone=time.perf_counter() - started), new


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=10)
    parser.add_argument("--workers", type=int, default=NODE_AGENT_WORKERS)
    args = parser.parse_args()
    with PrivateEngine() as engine:
        engine.pull(HELLO_V1)
        engine.pull(HELLO_V2)
        pods = hand_pods(engine.network(), args.pods, prefix="hand-a")
        created = create_pods(engine, pods, workers=args.workers)
        print(f"create and start {args.pods} pods ({args.workers} in flight): {created:.3f} s")
        replaced, new = replace_pods(engine, pods, image=HELLO_V2, prefix="hand-b")
        print(f"replace {args.pods} pods one at a time: last new pod running at {replaced.last_new_running:.3f} s, "
              f"last old pod gone at {replaced.last_old_gone:.3f} s")
        remove_pods(engine, new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
