"""Benchmark: HTTP requests through the service proxy vs straight to the backend.

How to run (from the repository root; no podman needed, loopback traffic only):

    python3 bench/proxy.py                       # 5000 requests, 8 concurrent clients
    python3 bench/proxy.py --requests 20000 --concurrency 16 --duration 60
    python3 bench/proxy.py --pod 127.244.0.2:8080   # a real pod IP (see `reconciler get pods -o wide`)

It starts a small asyncio HTTP server (the backend) in a process of its own, then runs
the load generator, also in a process of its own, twice: straight at the backend, and
at a ClusterIP on which a ``ServiceProxy`` (in this process, as in the daemon) forwards
to it. Each request is a new TCP connection (``Connection: close``: no keep-alive, so
every request pays the proxy's accept + connect, which is what a proxy adds). The run
stops after ``--requests`` requests or ``--duration`` seconds, whichever is first.
It prints requests per second, p50 and p99 latency for both, the ratios, and the CPU
time the proxy spent per request (the steadiest figure on a busy or small machine:
the three processes share the CPUs, so throughput also measures contention).

Why separate processes: the proxy's event loop should not share a GIL with the load
generator or the backend, or the figures would measure contention rather than the proxy.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import resource
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
            b"Connection: close\r\n\r\nhello, world\n")


# -- backend ---------------------------------------------------------------------------------
class _Http(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\r\n\r\n" in self.buf:
            self.transport.write(RESPONSE)  # type: ignore[attr-defined]
            self.transport.close()


def serve_backend(ip: str, port: int) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Http, ip, port, backlog=4096, reuse_address=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# -- load generator -----------------------------------------------------------------------------
def run_load(ip: str, port: int, requests: int, concurrency: int, duration: float, out: mp.Queue) -> None:
    request = f"GET / HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n".encode()

    async def main() -> tuple[list[float], int, float]:
        loop = asyncio.get_running_loop()
        latencies: list[float] = []
        errors = 0
        issued = 0
        deadline = time.perf_counter() + duration

        async def one() -> None:
            nonlocal errors
            started = time.perf_counter()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, (ip, port))
                await loop.sock_sendall(sock, request)
                reply = b""
                while True:
                    chunk = await loop.sock_recv(sock, 65536)
                    if not chunk:
                        break
                    reply += chunk
                if not reply.startswith(b"HTTP/1.1 200"):
                    raise OSError("bad reply")
                latencies.append(time.perf_counter() - started)
            except OSError:
                errors += 1
            finally:
                sock.close()

        async def worker() -> None:
            nonlocal issued
            while issued < requests and time.perf_counter() < deadline:
                issued += 1
                await one()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, errors, time.perf_counter() - started

    out.put(asyncio.run(main()))


def measure(ip: str, port: int, args: argparse.Namespace) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=run_load, args=(ip, port, args.requests, args.concurrency, args.duration, queue))
    proc.start()
    latencies, errors, elapsed = queue.get(timeout=args.duration + 60)
    proc.join(30)
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "errors": errors,
        "rps": n / elapsed if elapsed else 0.0,
        "p50_ms": statistics.median(latencies) * 1000 if n else float("nan"),
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else float("nan"),
    }


def _cpu_seconds() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # this process: the proxy's thread, idle otherwise
    return usage.ru_utime, usage.ru_stime


def wait_listening(ip: str, port: int, *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((ip, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the backend did not start listening on {ip}:{port} within {timeout:.0f} s.")


def free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests per run (default 5000)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--duration", type=float, default=30.0, help="time limit per run in seconds (default 30)")
    parser.add_argument("--backend-ip", default="127.201.0.2", help="backend address (loopback)")
    parser.add_argument("--cluster-ip", default="127.201.1.10", help="ClusterIP the proxy listens on (loopback)")
    parser.add_argument("--pod", metavar="IP:PORT", help="use a running pod (its pod IP and port) as the backend")
    args = parser.parse_args()
    if args.pod:
        args.backend_ip, _, pod_port = args.pod.rpartition(":")
    for ip in (args.backend_ip, args.cluster_ip):
        if not ip.startswith("127."):
            parser.error(f"{ip} is not a loopback address; this benchmark only sends traffic to 127.0.0.0/8.")

    from reconciler.proxy.userspace import ServiceProxy

    if args.pod:
        backend_port, backend = int(pod_port), None
    else:
        backend_port = free_port(args.backend_ip)
        ctx = mp.get_context("spawn")
        backend = ctx.Process(target=serve_backend, args=(args.backend_ip, backend_port), daemon=True)
        backend.start()
    proxy = ServiceProxy()
    try:
        wait_listening(args.backend_ip, backend_port)
        direct = measure(args.backend_ip, backend_port, args)
        proxy.start()
        svc = {"metadata": {"namespace": "bench", "name": "web"},
               "spec": {"type": "ClusterIP", "clusterIP": args.cluster_ip, "ports": [{"name": "http", "port": 80}]}}
        eps = {"metadata": {"namespace": "bench", "name": "web"},
               "subsets": [{"addresses": [{"ip": args.backend_ip}], "ports": [{"name": "http", "port": backend_port}]}]}
        proxy.sync(services=[svc], endpoints=[eps])
        if proxy.problems():
            raise SystemExit("; ".join(proxy.problems()))
        cpu_before = _cpu_seconds()
        proxied = measure(args.cluster_ip, 80, args)
        proxy_user, proxy_sys = (after - before for after, before in zip(_cpu_seconds(), cpu_before))
    finally:
        proxy.stop()
        if backend is not None:
            backend.terminate()
            backend.join(10)

    print(f"{args.concurrency} concurrent clients, one connection per request (no keep-alive)")
    print(f"{'':10}{'requests':>10}{'errors':>8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for name, r in (("direct", direct), ("proxy", proxied)):
        print(f"{name:10}{r['requests']:>10}{r['errors']:>8}{r['rps']:>10.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}")
    if proxied["requests"]:
        per = 1e6 / proxied["requests"]
        print(f"proxy CPU: {(proxy_user + proxy_sys) * per:.0f} us per request "
              f"({proxy_user * per:.0f} user + {proxy_sys * per:.0f} system; this process, during the proxied run)")
    if direct["rps"] and proxied["rps"]:
        print(f"proxy/direct: throughput {proxied['rps'] / direct['rps']:.2f}x, "
              f"p99 latency {proxied['p99_ms'] / direct['p99_ms']:.2f}x")
    return 0 if not (direct["errors"] or proxied["errors"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
