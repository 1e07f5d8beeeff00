"""Benchmark: how long the nftables data plane takes to write a big ruleset, and to change one endpoint.

How to run (from the repository root, as root; needs ``nft`` and ``ip``, touches no host table):

    python3 bench/nftables.py                       # 1,000 Services x 3 endpoints, 5 + 20 repetitions
    python3 bench/nftables.py --services 5000 --json /tmp/nft.json

It makes a scratch network namespace (``rcnft-bench-…``), and in it times, end to end
(render the text + one ``nft -f -`` + the kernel's commit):

* ``nft.full``: the whole table for N Services x M endpoints (each with a NodePort, so every
  kind of chain is there) — what the node agent writes on start and on a full resync;
  goal < 100 ms for 1,000 x 3 (issue 12);
* ``nft.update``: one endpoint of one Service replaced through the partial update — what
  every pod start or stop costs; goal < 20 ms.

The render alone is reported in the note of each figure, to tell Python's share from nft's,
and the CPU time of render + apply (this process: libnftables runs in one of its threads, and
the kernel's commit is system time), which a busy machine disturbs much less than the clock.
No packet is sent; the namespace (and with it the table) is deleted at the end, also on error.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import Figure, Results, format_table, median  # noqa: E402
from reconciler.proxy.nftables import (  # noqa: E402
    Endpoint,
    NftTable,
    ProxyState,
    ServicePort,
    render_full,
    render_update_pair,
)


def make_state(services: int, endpoints: int, generation: int = 0) -> ProxyState:
    """``services`` Service ports in 10.96.0.0/16, each with ``endpoints`` pod IPs in 10.244.0.0/16."""
    table: dict[ServicePort, list[Endpoint]] = {}
    for i in range(services):
        sp = ServicePort(namespace="bench", name=f"svc-{i}", cluster_ip=f"10.96.{i // 250}.{i % 250 + 1}",
                         port=80, port_name="http", node_port=30000 + i % 2768 if i < 2768 else None)
        table[sp] = [Endpoint(f"10.244.{(i * endpoints + e) // 250}.{(i * endpoints + e) % 250 + 2}", 8080)
                     for e in range(endpoints)]
    if generation:
        # One endpoint of the first Service moves (a pod replaced): the partial update's case.
        first = next(iter(table))
        table[first] = table[first][:-1] + [Endpoint(f"10.244.255.{generation % 250 + 2}", 8080)]
    return ProxyState(services=table, node_ips=("198.18.0.1",), cluster_cidr="10.244.0.0/16")


def _children_cpu_ms() -> float:
    """CPU time (user + system) of this process and its finished children: libnftables runs in a
    thread of this process (``nft -f -`` in a child where the library is missing); less sensitive
    than the wall clock to other work on a busy machine (the kernel's commit work is system time)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime) * 1000


def run(results: Results, services: int = 1000, endpoints: int = 3, reps: int = 5, updates: int = 20) -> None:
    ns = f"rcnft-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    try:
        table = NftTable(netns=ns)
        base = make_state(services, endpoints)

        full, render, cpu = [], [], []
        for _ in range(reps):
            c0 = _children_cpu_ms()
            t0 = time.perf_counter()
            text = render_full(base)
            t1 = time.perf_counter()
            table.apply(text)
            full.append((time.perf_counter() - t0) * 1000)
            render.append((t1 - t0) * 1000)
            cpu.append(_children_cpu_ms() - c0)
        table.applied = base
        rules = table.listing().count("\n")
        results.add(Figure(
            key="nft.full", title=f"nft ruleset, {services} Services x {endpoints} endpoints", unit="ms",
            value=median(full), samples=tuple(full), goal=100.0 if (services, endpoints) == (1000, 3) else None,
            goal_text="< 100 ms" if (services, endpoints) == (1000, 3) else "",
            note=f"render alone {median(render):.1f} ms; CPU of render + apply {median(cpu):.0f} ms; "
                 f"{len(text.splitlines())} "
                 f"commands; `nft list table` {rules} lines; load average {os.getloadavg()[0]:.1f}",
            command="python3 bench/nftables.py"))

        update, render, cpu = [], [], []
        state = base
        for n in range(1, updates + 1):
            new = make_state(services, endpoints, generation=n)
            c0 = _children_cpu_ms()
            t0 = time.perf_counter()
            text, _later = render_update_pair(state, new) or ("", [])
            t1 = time.perf_counter()
            table.apply(text)
            update.append((time.perf_counter() - t0) * 1000)
            render.append((t1 - t0) * 1000)
            cpu.append(_children_cpu_ms() - c0)
            state = new
        results.add(Figure(
            key="nft.update", title="nft partial update, one endpoint changed", unit="ms",
            value=median(update), samples=tuple(update), goal=20.0, goal_text="< 20 ms",
            note=f"render alone {median(render):.2f} ms; CPU of render + apply {median(cpu):.0f} ms; "
                 f"{len(text.splitlines())} "
                 f"commands (in a table of {services} Services); load average {os.getloadavg()[0]:.1f}",
            command="python3 bench/nftables.py"))
        table.cleanup()
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=3)
    parser.add_argument("--reps", type=int, default=5, help="full rulesets written (median reported)")
    parser.add_argument("--updates", type=int, default=20, help="partial updates written (median reported)")
    parser.add_argument("--json", type=Path, help="save the figures here (bench/figures.py's format)")
    args = parser.parse_args()
    if args.services > 250 * 250 or args.services * args.endpoints > 250 * 255:
        parser.error("too many Services or endpoints for the address scheme (10.96.0.0/16, 10.244.0.0/16)")
    results = Results(command=" ".join(sys.argv))
    run(results, args.services, args.endpoints, args.reps, args.updates)
    print()
    print(format_table(results.figures))
    for figure in results.figures:
        print(f"  {figure.key}: {figure.note}")
    if args.json:
        results.save(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
