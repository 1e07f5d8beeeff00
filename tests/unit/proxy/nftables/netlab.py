"""A throw-away network on this machine for the data-plane tests: a node and its pods as namespaces.

Why real namespaces: the thing under test is what the kernel does with the rules (DNAT,
spreading, affinity, hairpin, rejects), and only the kernel can say. Each ``Lab`` makes its
own namespaces with unique names and only our addresses:

* ``node``: the host whose table is tested. A bridge ``br0`` 10.244.50.1/24 (the pod network,
  as podman makes it) and a link ``uplink`` 198.18.0.1/24 to ``client``; the service CIDR
  10.96.0.0/16 is routed via ``uplink`` so the host's own connections to a ClusterIP have a
  route before DNAT rewrites them (a real host has its default route for this).
* ``pod0..podN-1``: one namespace per pod, 10.244.50.(2+i), default route via the bridge
  (its bridge port in hairpin mode, see ``start``),
  each running a tiny TCP server on :8080 that answers ``"<its address> <peer address>"``.
* ``client``: another host, 198.18.0.2, routes 10.96.0.0/16 via the node.

Links are created inside the namespaces (``ip link add … netns``), never on the host, so
nothing here is visible outside; ``close()`` kills the servers and deletes the namespaces,
which takes their links, addresses, routes and nft tables with them.
"""
from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field

SUBNET = "10.244.50"
NODE_IP = "198.18.0.1"
CLIENT_IP = "198.18.0.2"
SERVER_PORT = 8080

# Answers each connection with "<local address> <peer address>\n" and closes it.
SERVER = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(512)
print("ready", flush=True)
def answer(c):
    with c:
        c.sendall(f"{c.getsockname()[0]} {c.getpeername()[0]}\n".encode())
while True:
    c, _ = s.accept()
    threading.Thread(target=answer, args=(c,), daemon=True).start()
"""

# Connects COUNT times (or, with COUNT 0, until stdin closes) and prints one JSON list:
# {"reply": "..."} or {"error": "ECONNREFUSED", "seconds": 0.001} per connection.
CLIENT = r"""
import errno, json, os, select, socket, sys, time
ip, port, count, bind, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
out = []
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    if count and len(out) >= count:
        break
    if not count and select.select([sys.stdin], [], [], 0)[0] and not sys.stdin.read(1):
        break
    t = time.monotonic()
    s = socket.socket(); s.settimeout(timeout)
    try:
        if bind:
            s.bind((bind, 0))
        s.connect((ip, port))
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(100)
            if not chunk:
                break
            data += chunk
        out.append({"reply": data.decode().strip(), "seconds": time.monotonic() - t})
    except OSError as e:
        name = errno.errorcode.get(e.errno, "") if e.errno else type(e).__name__
        out.append({"error": name, "seconds": time.monotonic() - t})
    finally:
        s.close()
    if not count and len(out) == 1:
        print("started", flush=True)
print(json.dumps(out), flush=True)
"""


def sh(*args: str) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def _readline(proc: subprocess.Popen[str], deadline: float) -> str:
    """One line from ``proc``'s stdout, waiting at most until ``deadline``."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if sel.select(timeout=max(0.0, deadline - time.monotonic())):
                return proc.stdout.readline()
    raise TimeoutError("no line from the subprocess in time")


@dataclass
class Lab:
    pods: int = 3
    hairpin: bool = True
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    namespaces: list[str] = field(default_factory=list)
    servers: list[subprocess.Popen[str]] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"rcnft-{self.tag}-{role}"

    @property
    def node(self) -> str:
        return self.ns("node")

    def pod_ip(self, i: int) -> str:
        return f"{SUBNET}.{2 + i}"

    def pod_ns(self, i: int) -> str:
        return self.ns(f"pod{i}")

    def _add_ns(self, role: str) -> str:
        name = self.ns(role)
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def start(self) -> Lab:
        node, client = self._add_ns("node"), self._add_ns("client")
        sh("ip", "-n", node, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", node, "addr", "add", f"{SUBNET}.1/24", "dev", "br0")
        sh("ip", "-n", node, "link", "set", "br0", "up")
        sh("ip", "-n", node, "link", "add", "uplink", "type", "veth", "peer", "name", "eth0", "netns", client)
        sh("ip", "-n", node, "addr", "add", f"{NODE_IP}/24", "dev", "uplink")
        sh("ip", "-n", node, "link", "set", "uplink", "up")
        sh("ip", "-n", node, "route", "add", "10.96.0.0/16", "dev", "uplink")
        sh("ip", "-n", client, "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        sh("ip", "-n", client, "link", "set", "eth0", "up")
        sh("ip", "-n", client, "route", "add", "10.96.0.0/16", "via", NODE_IP)
        for i in range(self.pods):
            pod = self._add_ns(f"pod{i}")
            sh("ip", "-n", node, "link", "add", f"vp{i}", "type", "veth", "peer", "name", "eth0", "netns", pod)
            sh("ip", "-n", node, "link", "set", f"vp{i}", "master", "br0", "up")
            # Hairpin mode on the pod's bridge port, as kubelet's hairpin-veth mode sets it: with
            # br_netfilter loaded, a packet DNATed to a pod on the same bridge is *bridged*, and
            # for a pod reaching itself that means out of the port it came in on, which a bridge
            # refuses unless the port is in hairpin mode (the SYN is dropped, the client retries).
            if self.hairpin:
                sh("ip", "-n", node, "link", "set", f"vp{i}", "type", "bridge_slave", "hairpin", "on")
            sh("ip", "-n", pod, "addr", "add", f"{self.pod_ip(i)}/24", "dev", "eth0")
            sh("ip", "-n", pod, "link", "set", "eth0", "up")
            sh("ip", "-n", pod, "route", "add", "default", "via", f"{SUBNET}.1")
        for i in range(self.pods):
            self.servers.append(self._popen(self.pod_ns(i), SERVER, str(SERVER_PORT)))
        deadline = time.monotonic() + 10
        for proc in self.servers:
            assert _readline(proc, deadline).strip() == "ready"
        return self

    def _popen(self, ns: str, code: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", sys.executable, "-c", code, *args],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def connect(self, ns: str, ip: str, port: int, count: int = 1, bind: str = "",
                timeout: float = 5.0) -> list[dict]:
        """``count`` connections from namespace ``ns`` to ``ip:port``; one result dict each."""
        proc = subprocess.run(["nsenter", f"--net=/run/netns/{ns}", sys.executable, "-c", CLIENT,
                               ip, str(port), str(count), bind, str(timeout)],
                              capture_output=True, text=True, timeout=120, check=True)
        return json.loads(proc.stdout)

    def connect_until_stopped(self, ns: str, ip: str, port: int) -> Flow:
        """Connections in a loop, in the background, until ``Flow.stop()``."""
        proc = self._popen(ns, CLIENT, ip, str(port), "0", "", "2.0")
        if _readline(proc, time.monotonic() + 10).strip() != "started":
            proc.kill()
            raise RuntimeError("the client loop did not start")
        return Flow(proc)

    def close(self) -> None:
        for proc in self.servers:
            proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdin, proc.stdout):
                if stream:
                    stream.close()
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30, check=False)
        self.namespaces.clear()


@dataclass
class Flow:
    proc: subprocess.Popen[str]

    def stop(self) -> list[dict]:
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # the loop's signal to finish and print its results
        try:
            line = _readline(self.proc, time.monotonic() + 30)
        finally:
            self.proc.kill()
            self.proc.wait(timeout=10)
        return json.loads(line)


def usable() -> str:
    """Why real-kernel tests cannot run here ("" if they can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and nftables)"
    for tool in ("ip", "nft", "nsenter"):
        if subprocess.run(["sh", "-c", f"command -v {tool} || test -x /usr/sbin/{tool}"],
                          capture_output=True, check=False).returncode != 0:
            return f"needs {tool}"
    return ""
