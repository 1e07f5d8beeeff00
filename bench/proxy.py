"""Benchmark: TCP/HTTP through a ClusterIP (the real nftables rules) against straight to the pod IPs.

How to run (from the repository root, as root; needs ``ip``, ``nft`` and ``nsenter``; no podman):

    python3 bench/proxy.py                          # 6,000 requests a side, 8 clients, from a pod
    python3 bench/proxy.py --requests 20000 --concurrency 16 --source node
    python3 bench/proxy.py --json /tmp/proxy.json   # bench/figures.py's format

What it builds, all in scratch network namespaces named ``rcproxy-<tag>-…`` (nothing on the
host; the namespaces, and with them every link, route and the nftables table, are deleted at
the end, also on error or Ctrl-C):

* ``node``: the host of the data plane — a bridge ``br0`` 10.244.60.1/24 (a node's pod
  network, as podman makes it) and the product's ``NftTable`` in it, written by
  ``NftTable.sync`` for one Service ``bench/web`` (ClusterIP 10.96.0.10:80, the
  ``--endpoints`` pods as its endpoints on :8080), with the same sysctls and service route
  the node agent sets (``ensure_sysctls``, ``ensure_service_route``);
* ``pod0..podN-1``: the endpoints, one namespace each on the bridge (10.244.60.2…), each
  running a small asyncio HTTP server in a process of its own;
* ``client``: one more pod on the bridge (10.244.60.200), where the load runs — the path a
  pod takes to a Service (``--source node`` runs it in the node namespace instead: the host's
  own connections, which the nat output hook DNATs).

The load is bounded: ``--requests`` per side, ``--concurrency`` clients, each request a new TCP
connection (``Connection: close``: every request pays the connection set-up, which is where
DNAT and conntrack act; keep-alive traffic pays it once per connection). The two sides
alternate over ``--rounds`` rounds in one run (direct, ClusterIP, ClusterIP, direct, …), so
drift on a shared machine falls on both. "Direct" spreads its requests over the same pod IPs
round-robin, as the ClusterIP spreads them, so both sides load the same servers equally.

Reported: requests per second of each side, the ratio (goal >= 0.95x), p50 and p99 latency of
each side, and the added p99 (ClusterIP p99 minus direct p99; goal < 0.2 ms). Any failed
request makes the run fail: a rule that drops or rejects would otherwise look fast.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import Figure, Results, format_table  # noqa: E402

SUBNET = "10.244.60"
BRIDGE_IP = f"{SUBNET}.1"
CLIENT_IP = f"{SUBNET}.200"
CLUSTER_IP = "10.96.0.10"
SERVICE_CIDR = "10.96.0.0/16"
PORT = 8080
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
            b"Connection: close\r\n\r\nhello, world\n")


# -- the parts that run inside a namespace (this file again, with --serve or --load) ---------
class _Http(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\r\n\r\n" in self.buf:
            self.transport.write(RESPONSE)  # type: ignore[attr-defined]
            self.transport.close()


def serve(port: int) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Http, "0.0.0.0", port, backlog=4096,
                                                                reuse_address=True)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def load(targets: list[tuple[str, int]], requests: int, concurrency: int, timeout: float) -> dict:
    """``requests`` HTTP requests over ``concurrency`` clients, each a new connection, to
    ``targets`` round-robin; latencies (s), errors and the elapsed time."""
    async def main() -> dict:
        loop = asyncio.get_running_loop()
        latencies: list[float] = []
        errors: list[str] = []
        issued = 0

        async def one(ip: str, port: int) -> None:
            request = f"GET / HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n".encode()
            started = time.perf_counter()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                async with asyncio.timeout(timeout):
                    await loop.sock_connect(sock, (ip, port))
                    await loop.sock_sendall(sock, request)
                    reply = b""
                    while chunk := await loop.sock_recv(sock, 65536):
                        reply += chunk
                if not reply.startswith(b"HTTP/1.1 200"):
                    raise OSError(f"bad reply {reply[:40]!r}")
                latencies.append(time.perf_counter() - started)
            except (OSError, TimeoutError) as exc:
                errors.append(f"{ip}:{port}: {exc or type(exc).__name__}")
            finally:
                sock.close()

        async def worker() -> None:
            nonlocal issued
            while issued < requests:
                ip, port = targets[issued % len(targets)]
                issued += 1
                await one(ip, port)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return {"latencies": latencies, "errors": errors[:5], "error_count": len(errors),
                "elapsed": time.perf_counter() - started}

    return asyncio.run(main())


# -- the lab ------------------------------------------------------------------------------------
def _sh(*args: str) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


@dataclass
class Lab:
    """The namespaces above; ``close()`` removes all of them (and so every link, route and table)."""

    endpoints: int = 3
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    namespaces: list[str] = field(default_factory=list)
    servers: list[subprocess.Popen[str]] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"rcproxy-{self.tag}-{role}"

    def pod_ip(self, i: int) -> str:
        return f"{SUBNET}.{2 + i}"

    def _add_ns(self, role: str) -> str:
        name = self.ns(role)
        _sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        _sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def _add_pod(self, role: str, ip: str, index: int) -> str:
        node, pod = self.ns("node"), self._add_ns(role)
        # Links are made inside the namespaces, never on the host.
        _sh("ip", "-n", node, "link", "add", f"vp{index}", "type", "veth", "peer", "name", "eth0", "netns", pod)
        _sh("ip", "-n", node, "link", "set", f"vp{index}", "master", "br0", "up")
        _sh("ip", "-n", pod, "addr", "add", f"{ip}/24", "dev", "eth0")
        _sh("ip", "-n", pod, "link", "set", "eth0", "up")
        _sh("ip", "-n", pod, "route", "add", "default", "via", BRIDGE_IP)
        return pod

    def start(self) -> Lab:
        node = self._add_ns("node")
        _sh("ip", "-n", node, "link", "add", "br0", "type", "bridge")
        _sh("ip", "-n", node, "addr", "add", f"{BRIDGE_IP}/24", "dev", "br0")
        _sh("ip", "-n", node, "link", "set", "br0", "up")
        for i in range(self.endpoints):
            self._add_pod(f"pod{i}", self.pod_ip(i), i)
        self._add_pod("client", CLIENT_IP, self.endpoints)
        for i in range(self.endpoints):
            self.servers.append(self.popen(self.ns(f"pod{i}"), "--serve", str(PORT)))
        for proc in self.servers:
            if _readline(proc, time.monotonic() + 20).strip() != "ready":
                raise RuntimeError("an endpoint's HTTP server did not start")
        return self

    def popen(self, ns: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", sys.executable, __file__, *args],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)

    def close(self) -> None:
        for proc in self.servers:
            proc.kill()
            proc.wait(timeout=10)
            if proc.stdout:
                proc.stdout.close()
        self.servers.clear()
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30, check=False)
        self.namespaces.clear()


def _readline(proc: subprocess.Popen[str], deadline: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if sel.select(timeout=max(0.0, deadline - time.monotonic())):
            return proc.stdout.readline()
    raise TimeoutError("no line from the subprocess in time")


def _run_load(lab: Lab, ns: str, targets: list[tuple[str, int]], requests: int, concurrency: int) -> dict:
    spec = json.dumps({"targets": targets, "requests": requests, "concurrency": concurrency, "timeout": 5.0})
    proc = subprocess.run(["nsenter", f"--net=/run/netns/{ns}", sys.executable, __file__, "--load", spec],
                          capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the load generator failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout)


def _percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def run(results: Results, *, requests: int = 6000, concurrency: int = 8, rounds: int = 6, endpoints: int = 3,
        source: str = "pod", command: str = "python3 bench/proxy.py") -> None:
    from reconciler.proxy.nftables import Endpoint, NftTable, ProxyState, ServicePort

    lab = Lab(endpoints=endpoints)
    try:
        lab.start()
        table = NftTable(netns=lab.ns("node"))
        table.ensure_sysctls()
        table.ensure_service_route(SERVICE_CIDR, src=BRIDGE_IP)
        service = ServicePort(namespace="bench", name="web", cluster_ip=CLUSTER_IP, port=80, port_name="http")
        table.sync(ProxyState(services={service: [Endpoint(lab.pod_ip(i), PORT) for i in range(endpoints)]},
                              node_ips=(BRIDGE_IP,), cluster_cidr=f"{SUBNET}.0/24"))
        ns = lab.ns("client") if source == "pod" else lab.ns("node")
        sides = {"direct": [(lab.pod_ip(i), PORT) for i in range(endpoints)], "clusterip": [(CLUSTER_IP, 80)]}
        _run_load(lab, ns, sides["clusterip"], 200, concurrency)  # warm-up: caches, ARP, conntrack
        latencies: dict[str, list[float]] = {"direct": [], "clusterip": []}
        elapsed = {"direct": 0.0, "clusterip": 0.0}
        rps_rounds: dict[str, list[float]] = {"direct": [], "clusterip": []}
        per_round = max(1, requests // rounds)
        for r in range(rounds):
            order = ("direct", "clusterip") if r % 2 == 0 else ("clusterip", "direct")
            for side in order:
                out = _run_load(lab, ns, sides[side], per_round, concurrency)
                if out["error_count"]:
                    raise RuntimeError(f"{out['error_count']} of {per_round} {side} requests failed, e.g. "
                                       f"{out['errors'][0]}")
                latencies[side] += out["latencies"]
                elapsed[side] += out["elapsed"]
                rps_rounds[side].append(len(out["latencies"]) / out["elapsed"])
        table.cleanup()
    finally:
        lab.close()

    stats = {}
    for side in ("direct", "clusterip"):
        values = sorted(latencies[side])
        stats[side] = {"rps": len(values) / elapsed[side], "p50": statistics.median(values) * 1000,
                       "p99": _percentile(values, 0.99) * 1000, "n": len(values)}
    d, c = stats["direct"], stats["clusterip"]
    load_note = (f"{c['n']} requests a side in {rounds} alternating rounds, {concurrency} clients, one connection "
                 f"per request, from {'a pod' if source == 'pod' else 'the node'} to {endpoints} pods; "
                 f"load average {os.getloadavg()[0]:.1f}")
    # The goal is on direct/ClusterIP (ratio <= 1/0.95): the table's ratio is value/baseline.
    results.add(Figure(
        key="proxy.rps", title=f"req/s straight to the pod IPs, against through the ClusterIP, from {source}",
        unit="req/s", value=round(d["rps"]), baseline=round(c["rps"]), baseline_title="(ClusterIP)",
        goal=1 / 0.95, goal_text="ratio <= 1.05 (ClusterIP >= 0.95x)", samples=tuple(round(x) for x in rps_rounds["direct"]),
        baseline_samples=tuple(round(x) for x in rps_rounds["clusterip"]),
        note=f"value = straight to the pod IPs; ClusterIP/direct {c['rps'] / d['rps']:.3f}x; {load_note}",
        command=command))
    results.add(Figure(
        key="proxy.p50", title=f"ClusterIP p50 latency, from {source}", unit="ms", value=c["p50"],
        baseline=d["p50"], baseline_title="straight to the pod IPs", note=load_note, command=command))
    results.add(Figure(
        key="proxy.p99-added", title=f"ClusterIP added p99 latency, from {source}", unit="ms",
        value=c["p99"] - d["p99"], goal=0.2, goal_text="< 0.2 ms",
        note=f"p99 {c['p99']:.2f} ms through the ClusterIP, {d['p99']:.2f} ms straight to the pod IPs; {load_note}",
        command=command))


def usable() -> str:
    """Why this benchmark cannot run here ("" if it can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and nftables)"
    for tool in ("ip", "nft", "nsenter"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return ""


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "--load":
        spec = json.loads(sys.argv[2])
        print(json.dumps(load([tuple(t) for t in spec["targets"]], spec["requests"], spec["concurrency"],
                              spec["timeout"])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=6000, help="requests a side (default 6000)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds the requests are split into")
    parser.add_argument("--endpoints", type=int, default=3, help="pods behind the Service (default 3)")
    parser.add_argument("--source", choices=("pod", "node"), default="pod",
                        help="where the load runs: another pod on the bridge, or the node itself")
    parser.add_argument("--json", type=Path, help="save the figures here (bench/figures.py's format)")
    args = parser.parse_args()
    if not 1 <= args.endpoints <= 100 or args.requests < 1 or args.concurrency < 1 or args.rounds < 1:
        parser.error("--endpoints must be 1-100, and --requests, --concurrency and --rounds at least 1.")
    if why := usable():
        parser.error(f"this benchmark {why}.")
    results = Results(command=" ".join(sys.argv))
    try:
        run(results, requests=args.requests, concurrency=args.concurrency, rounds=args.rounds,
            endpoints=args.endpoints, source=args.source, command=" ".join(["python3", *sys.argv]))
    except RuntimeError as exc:
        print(f"bench/proxy.py: {exc}", file=sys.stderr)
        return 1
    print()
    print(format_table(results.figures))
    for figure in results.figures:
        print(f"  {figure.key}: {figure.note}")
    if args.json:
        results.save(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
