"""The service proxy, with real sockets on loopback.

Backends are small threaded line servers on 127.x addresses picked per test (never the
default service CIDR 127.96/16 or the node CIDRs, so a daemon on this host is not
disturbed): each reply is ``<backend tag>:<line>``, so a test sees which endpoint
served it. Every wait has a deadline.
"""
from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter

import pytest

from reconciler.proxy.userspace import ServiceProxy, cluster_ip_listeners, plan_ports

DEADLINE = 10.0
_rng = random.Random()
_used: set[str] = set()


def fresh_ip() -> str:
    """A loopback address no other test (or daemon) in this run uses."""
    for _ in range(1000):
        ip = f"127.{_rng.randint(150, 199)}.{_rng.randint(0, 255)}.{_rng.randint(2, 254)}"
        if ip not in _used:
            _used.add(ip)
            return ip
    raise RuntimeError("no loopback address left")


def free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def wait_for(condition, *, timeout: float = DEADLINE, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class Backend:
    """A threaded line server: replies ``tag:line`` per line, until the client closes."""

    def __init__(self, tag: str, ip: str | None = None) -> None:
        self.tag = tag
        self.ip = ip or fresh_ip()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.ip, 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.accepted = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    conn.sendall(self.tag.encode() + b":" + line + b"\n")
        except OSError:
            pass
        finally:
            conn.close()

    def endpoint(self) -> dict:
        return {"ip": self.ip, "port": self.port}

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self._lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


def service(name: str, *, cluster_ip: str | None, port: int = 80, port_name: str = "http", type_: str = "ClusterIP",
            node_port: int | None = None, affinity: str = "None", timeout: int | None = None,
            created: str = "2026-01-01T00:00:00Z") -> dict:
    p: dict = {"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}
    if node_port:
        p["nodePort"] = node_port
    spec: dict = {"type": type_, "ports": [p], "selector": {"app": name}, "sessionAffinity": affinity}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
        spec["clusterIPs"] = [cluster_ip]
    if timeout is not None:
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": timeout}}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created}, "spec": spec}


def endpoints(name: str, backends: list[Backend | dict], *, port_name: str = "http", not_ready: list[Backend] = ()) -> dict:
    """One subset per backend (each has its own port number, as named targetPorts can)."""
    subsets = []
    for b in backends:
        e = b.endpoint() if isinstance(b, Backend) else b
        subsets.append({"addresses": [{"ip": e["ip"]}], "ports": [{"name": port_name, "port": e["port"], "protocol": "TCP"}]})
    for b in not_ready:
        subsets.append({"notReadyAddresses": [{"ip": b.ip}], "ports": [{"name": port_name, "port": b.port}]})
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": "default"}, "subsets": subsets}


def ask(address: tuple[str, int], line: str = "hello", *, source: str | None = None) -> str:
    """One connection, one line; returns the backend's tag."""
    with socket.create_connection(address, timeout=DEADLINE, source_address=(source, 0) if source else None) as c:
        c.sendall(line.encode() + b"\n")
        reply = read_line(c)
    tag, _, echoed = reply.partition(":")
    assert echoed == line
    return tag


def read_line(c: socket.socket) -> str:
    buf = b""
    deadline = time.monotonic() + DEADLINE
    while not buf.endswith(b"\n"):
        assert time.monotonic() < deadline, "no reply line"
        data = c.recv(65536)
        assert data, f"connection closed after {buf!r}"
        buf += data
    return buf.decode().rstrip("\n")


@pytest.fixture()
def proxy():
    px = ServiceProxy(node_port_address=fresh_ip(), housekeeping_interval=0.1)
    px.start()
    yield px
    px.stop()


@pytest.fixture()
def backends():
    made: list[Backend] = []

    def make(n: int) -> list[Backend]:
        new = [Backend(f"b{len(made) + i}") for i in range(n)]
        made.extend(new)
        return new

    yield make
    for b in made:
        b.close()


def test_round_robin_over_three_backends(proxy, backends):
    bs = backends(3)
    ip = fresh_ip()
    proxy.sync(services=[service("web", cluster_ip=ip)], endpoints=[endpoints("web", bs)])
    assert proxy.listeners() == [(ip, 80)]
    tags = [ask((ip, 80)) for _ in range(9)]
    assert Counter(tags) == {"b0": 3, "b1": 3, "b2": 3}
    assert tags[:3] == tags[3:6] == tags[6:]  # a strict rotation
    stats = proxy.stats()
    assert stats.forwarded == 9 and stats.rejected == 0 and stats.by_service == {"default/web:http": 9}
    assert proxy.problems() == []


def test_client_ip_affinity_pins_each_client_until_the_timeout(backends):
    now = [1000.0]
    px = ServiceProxy(node_port_address=fresh_ip(), clock=lambda: now[0])
    px.start()
    try:
        bs = backends(3)
        ip = fresh_ip()
        px.sync(services=[service("web", cluster_ip=ip, affinity="ClientIP", timeout=60)], endpoints=[endpoints("web", bs)])
        clients = [fresh_ip() for _ in range(3)]
        first = {c: ask((ip, 80), source=c) for c in clients}
        for _ in range(3):
            for c in clients:
                assert ask((ip, 80), source=c) == first[c]
                now[0] += 10  # each use renews the pin
        assert len(set(first.values())) == 3  # new clients still spread round-robin
        # Past the timeout the pin is gone: the next connection takes the round-robin turn
        # (pinned connections never took one, so it is the first backend's again) and
        # pins the client anew.
        now[0] += 61
        later = [ask((ip, 80), source=clients[1]) for _ in range(3)]
        assert later == [first[clients[0]]] * 3 != [first[clients[1]]] * 3
    finally:
        px.stop()


def test_affinity_endpoint_removed_moves_the_client(proxy, backends):
    bs = backends(2)
    ip = fresh_ip()
    svc = service("web", cluster_ip=ip, affinity="ClientIP")
    proxy.sync(services=[svc], endpoints=[endpoints("web", bs)])
    client = fresh_ip()
    pinned = ask((ip, 80), source=client)
    rest = [b for b in bs if b.tag != pinned]
    proxy.sync(services=[svc], endpoints=[endpoints("web", rest)])
    assert {ask((ip, 80), source=client) for _ in range(3)} == {rest[0].tag}


def test_refused_backend_is_skipped(proxy, backends):
    live = backends(2)
    dead_ip = fresh_ip()
    dead = {"ip": dead_ip, "port": free_port(dead_ip)}  # nothing listens there
    ip = fresh_ip()
    proxy.sync(services=[service("web", cluster_ip=ip)], endpoints=[endpoints("web", [live[0], dead, live[1]])])
    tags = [ask((ip, 80)) for _ in range(6)]
    assert set(tags) == {"b0", "b1"}
    stats = proxy.stats()
    assert stats.rejected == 0 and stats.connect_failures >= 2


def test_all_backends_refusing_closes_the_client_at_once(proxy):
    ip = fresh_ip()
    dead = [{"ip": x, "port": free_port(x)} for x in (fresh_ip(), fresh_ip())]
    proxy.sync(services=[service("web", cluster_ip=ip)], endpoints=[endpoints("web", dead)])
    assert_closed_at_once((ip, 80))
    stats = proxy.stats()
    assert stats.rejected == 1 and stats.connect_failures == 2  # each endpoint tried exactly once


def assert_closed_at_once(address):
    started = time.monotonic()
    try:  # on loopback the reset can beat connect() itself, or come before or after the write
        with socket.create_connection(address, timeout=DEADLINE) as c:
            c.sendall(b"hello\n")
            data = c.recv(100)
    except (ConnectionResetError, BrokenPipeError):
        data = b""
    assert data == b""
    assert time.monotonic() - started < 1.0


def test_no_ready_endpoint_closes_at_once(proxy, backends):
    (b,) = backends(1)
    ip = fresh_ip()
    # The only pod is not ready: it is in notReadyAddresses, which the proxy never uses.
    proxy.sync(services=[service("web", cluster_ip=ip)], endpoints=[endpoints("web", [], not_ready=[b])])
    assert_closed_at_once((ip, 80))
    proxy.sync(services=[service("web", cluster_ip=ip)], endpoints=[])  # no Endpoints object at all
    assert_closed_at_once((ip, 80))
    assert b.accepted == 0


def test_removed_endpoint_drains_while_new_connections_go_elsewhere(proxy, backends):
    old, new = backends(2)
    ip = fresh_ip()
    svc = service("web", cluster_ip=ip)
    proxy.sync(services=[svc], endpoints=[endpoints("web", [old])])
    with socket.create_connection((ip, 80), timeout=DEADLINE) as held:
        held.sendall(b"one\n")
        assert read_line(held) == f"{old.tag}:one"
        proxy.sync(services=[svc], endpoints=[endpoints("web", [new])])  # the old pod is terminating
        assert {ask((ip, 80)) for _ in range(4)} == {new.tag}
        held.sendall(b"two\n")  # the open connection is not cut
        assert read_line(held) == f"{old.tag}:two"
        # Removing the service port closes the listener; the open connection still drains.
        proxy.sync(services=[], endpoints=[])
        assert proxy.listeners() == []
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((ip, 80), timeout=DEADLINE)
        held.sendall(b"three\n")
        assert read_line(held) == f"{old.tag}:three"
    wait_for(lambda: proxy.stats().active == 0, what="the drained connection to close")


def test_node_port_listener(proxy, backends):
    (b,) = backends(1)
    ip = fresh_ip()
    node_port = free_port(proxy.node_port_address)
    svc = service("web", cluster_ip=ip, type_="NodePort", node_port=node_port)
    proxy.sync(services=[svc], endpoints=[endpoints("web", [b])])
    assert proxy.listeners() == sorted([(ip, 80), (proxy.node_port_address, node_port)])
    assert ask((proxy.node_port_address, node_port)) == b.tag
    assert ask((ip, 80)) == b.tag
    # A ClusterIP Service with a stray nodePort gets no node port listener.
    svc_cluster = service("web", cluster_ip=ip, node_port=node_port)
    proxy.sync(services=[svc_cluster], endpoints=[endpoints("web", [b])])
    assert proxy.listeners() == [(ip, 80)]


def test_unallocated_and_headless_services_get_no_listener(proxy, backends):
    (b,) = backends(1)
    refused = service("refused", cluster_ip=fresh_ip())
    refused["spec"]["clusterIPs"] = []  # the service controller refused the declared IP
    headless = service("headless", cluster_ip="None")
    proxy.sync(services=[refused, headless], endpoints=[endpoints("refused", [b]), endpoints("headless", [b])])
    assert proxy.listeners() == []


def test_sync_is_idempotent_and_keeps_connections(proxy, backends):
    (b,) = backends(1)
    ip = fresh_ip()
    state = dict(services=[service("web", cluster_ip=ip)], endpoints=[endpoints("web", [b])])
    proxy.sync(**state)
    with socket.create_connection((ip, 80), timeout=DEADLINE) as c:
        c.sendall(b"a\n")
        assert read_line(c) == f"{b.tag}:a"
        for _ in range(3):
            proxy.sync(**state)
        c.sendall(b"b\n")
        assert read_line(c) == f"{b.tag}:b"
    assert proxy.listeners() == [(ip, 80)] and proxy.problems() == []
    assert proxy.stats().accepted == 1


def test_bind_failure_is_reported_retried_and_does_not_stop_others(proxy, backends):
    (b,) = backends(1)
    busy_ip, ok_ip = fresh_ip(), fresh_ip()
    squatter = socket.socket()
    squatter.bind((busy_ip, 80))
    squatter.listen(1)
    try:
        proxy.sync(services=[service("busy", cluster_ip=busy_ip), service("ok", cluster_ip=ok_ip)],
                   endpoints=[endpoints("busy", [b]), endpoints("ok", [b])])
        (problem,) = proxy.problems()
        assert f"{busy_ip}:80" in problem and "default/busy" in problem
        assert proxy.listeners() == [(ok_ip, 80)]
        assert ask((ok_ip, 80)) == b.tag
    finally:
        squatter.close()
    wait_for(lambda: (busy_ip, 80) in proxy.listeners(), what="the retry to bind the freed address")
    assert proxy.problems() == []
    assert ask((busy_ip, 80)) == b.tag


def test_a_contested_address_goes_to_the_older_service(proxy, backends):
    old_b, new_b = backends(2)
    ip = fresh_ip()
    older = service("older", cluster_ip=ip, created="2026-01-01T00:00:00Z")
    newer = service("newer", cluster_ip=ip, created="2026-02-01T00:00:00Z")
    proxy.sync(services=[newer, older], endpoints=[endpoints("older", [old_b]), endpoints("newer", [new_b])])
    assert ask((ip, 80)) == old_b.tag
    (problem,) = proxy.problems()
    assert "default/older" in problem and "default/newer" in problem


def test_large_transfers_both_ways_with_half_close(proxy):
    """8 MiB up, then the client half-closes, then 8 MiB comes back: flow control and EOF."""
    payload = os.urandom(8 * 2**20)
    ip, backend_ip = fresh_ip(), fresh_ip()
    server = socket.socket()
    server.bind((backend_ip, 0))
    server.listen(1)
    received = []

    def serve():
        conn, _ = server.accept()
        with conn:
            got = bytearray()
            while True:
                data = conn.recv(1 << 20)
                if not data:
                    break
                got += data
            received.append(bytes(got))
            conn.sendall(bytes(reversed(got)))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        proxy.sync(services=[service("bulk", cluster_ip=ip)],
                   endpoints=[endpoints("bulk", [{"ip": backend_ip, "port": server.getsockname()[1]}])])
        with socket.create_connection((ip, 80), timeout=DEADLINE) as c:
            sender = threading.Thread(target=lambda: (c.sendall(payload), c.shutdown(socket.SHUT_WR)), daemon=True)
            sender.start()
            back = bytearray()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                data = c.recv(1 << 20)
                if not data:
                    break
                back += data
            sender.join(DEADLINE)
        t.join(DEADLINE)
        assert received == [payload]
        assert bytes(back) == bytes(reversed(payload))
    finally:
        server.close()


def test_plan_ports_matches_endpoint_ports_by_name():
    svc = service("web", cluster_ip="127.99.0.1")
    svc["spec"]["ports"].append({"name": "admin", "port": 81, "targetPort": 9001, "protocol": "TCP"})
    ep = {"metadata": {"name": "web", "namespace": "default"}, "subsets": [
        {"addresses": [{"ip": "127.244.0.10"}, {"ip": "127.244.0.9"}],
         "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9001}]}]}
    plans = plan_ports(services=[svc], endpoints=[ep], node_port_address="127.0.0.1")
    assert [(e.ip, e.port) for e in plans[("default", "web", "http")].endpoints] == [
        ("127.244.0.9", 8080), ("127.244.0.10", 8080)]
    assert [e.port for e in plans[("default", "web", "admin")].endpoints] == [9001, 9001]
    assert plans[("default", "web", "admin")].frontends == (("127.99.0.1", 81),)
    assert cluster_ip_listeners([svc]) == [("127.99.0.1", 80, ("default", "web", "http")),
                                           ("127.99.0.1", 81, ("default", "web", "admin"))]


# -- inside a pod's network namespace ------------------------------------------------------------
def _can_make_netns() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


@pytest.fixture()
def netns():
    if not _can_make_netns():
        pytest.skip("needs root and iproute2 to make a network namespace")
    name = f"rt-proxy-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True, timeout=30)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], timeout=30)


_CLIENT = """
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
except ConnectionRefusedError:
    print("refused"); raise SystemExit(0)
c.sendall(b"from-pod\\n")
buf = b""
while not buf.endswith(b"\\n"):
    data = c.recv(100)
    if not data:
        break
    buf += data
print(buf.decode().strip())
"""


def from_netns(name: str, address: tuple[str, int]) -> str:
    out = subprocess.run(["ip", "netns", "exec", name, "python3", "-c", _CLIENT, address[0], str(address[1])],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_serve_in_netns_reaches_a_backend_on_the_host(proxy, backends, netns):
    bs = backends(2)
    ip = fresh_ip()
    svc = service("web", cluster_ip=ip)
    proxy.sync(services=[svc], endpoints=[endpoints("web", bs)])
    path = f"/run/netns/{netns}"
    # The host's listener is not visible from inside the pod's netns...
    assert from_netns(netns, (ip, 80)) == "refused"
    proxy.serve_in_netns(netns_path=path, listeners=cluster_ip_listeners([svc]))
    assert proxy.netns_listeners(path) == [(ip, 80)]
    assert proxy.problems() == []
    # ...the one made inside it is, and it forwards to backends on the host's loopback.
    tags = {from_netns(netns, (ip, 80)) for _ in range(4)}
    assert tags == {f"{b.tag}:from-pod" for b in bs}
    # The proxy's own threads are all still in the host netns.
    host_ns = os.readlink("/proc/self/ns/net")
    assert {os.readlink(f"/proc/self/task/{t}/ns/net") for t in os.listdir("/proc/self/task")} == {host_ns}
    # Endpoint changes apply to netns listeners too.
    proxy.sync(services=[svc], endpoints=[endpoints("web", bs[:1])])
    assert {from_netns(netns, (ip, 80)) for _ in range(2)} == {f"{bs[0].tag}:from-pod"}
    # Idempotent; a listener dropped from the list closes.
    proxy.serve_in_netns(netns_path=path, listeners=cluster_ip_listeners([svc]))
    proxy.serve_in_netns(netns_path=path, listeners=[])
    assert from_netns(netns, (ip, 80)) == "refused"
    proxy.serve_in_netns(netns_path=path, listeners=cluster_ip_listeners([svc]))
    proxy.forget_netns(path)
    assert proxy.netns_listeners(path) == []
    assert from_netns(netns, (ip, 80)) == "refused"


def test_serve_in_netns_problems_and_vanished_netns(proxy, netns):
    proxy.serve_in_netns(netns_path="/run/netns/does-not-exist", listeners=[("127.99.0.1", 80, ("default", "x", ""))])
    assert any("does-not-exist" in p for p in proxy.problems())
    path = f"/run/netns/{netns}"
    ip = fresh_ip()
    proxy.serve_in_netns(netns_path=path, listeners=[(ip, 80, ("default", "web", "http"))])
    assert proxy.netns_listeners(path) == [(ip, 80)]
    subprocess.run(["ip", "netns", "del", netns], check=True, timeout=30)  # the pod went away
    wait_for(lambda: proxy.netns_listeners(path) == [], what="the proxy to forget a vanished netns")
    subprocess.run(["ip", "netns", "add", netns], check=True, timeout=30)  # for the fixture's cleanup


def test_stop_closes_everything_and_start_again_works(backends):
    (b,) = backends(1)
    ip = fresh_ip()
    state = dict(services=[service("web", cluster_ip=ip)], endpoints=[endpoints("web", [b])])
    px = ServiceProxy(node_port_address=fresh_ip())
    px.sync(**state)  # before start: applied by start()
    px.start()
    held = socket.create_connection((ip, 80), timeout=DEADLINE)
    held.sendall(b"x\n")
    assert read_line(held) == f"{b.tag}:x"
    px.stop()
    try:  # the proxy's side is gone: EOF or a reset, never a hang (the socket has a timeout)
        assert held.recv(100) == b""
    except ConnectionResetError:
        pass
    held.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((ip, 80), timeout=DEADLINE)
    px.start()
    try:
        px.sync(**state)
        assert ask((ip, 80)) == b.tag
    finally:
        px.stop()
