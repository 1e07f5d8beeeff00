"""The node agent's store over the API (`RemoteStore` + `reconciler node`'s failover transport),
against the real API server over real HTTPS on loopback ports, backed by a real store: the
pod watch, writes with their preconditions, an outage and the failover between servers."""
from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.apiserver.auth import Guard, TokenAuthority
from reconciler.apiserver.certs import ensure_pki
from reconciler.apiserver.https import HttpsApiServer
from reconciler.apiserver.routes import Routes
from reconciler.kubectl.commands.node import FailoverTransport
from reconciler.kubelet.remotestore import ApiDown, ApiRefused, RemoteStore
from reconciler.store.protocol import StoreReadWriter
from reconciler.store.store import Store
from tests.harness.waiting import wait_for


class Actions:
    def sync(self) -> dict:
        return {}

    def status(self) -> dict:
        return {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "img"}]}, "status": {"phase": "Pending"}}


class ControlPlane:
    """One store served by two HTTPS listeners (two API servers in front of one store)."""

    def __init__(self, tmp: Path) -> None:
        self.store = Store(tmp / "store.db")
        self.pki = ensure_pki(state_dir=tmp, listen="127.0.0.1:0")
        self.tokens = TokenAuthority(store=self.store)
        self.routes = Routes(store=self.store, actions=Actions(), tokens=self.tokens, pki=self.pki)
        self.ports = [free_port(), free_port()]
        self.servers: list[HttpsApiServer | None] = [None, None]

    def up(self, index: int) -> None:
        server = HttpsApiServer(routes=self.routes, listen=f"127.0.0.1:{self.ports[index]}", pki=self.pki,
                                guard=Guard(tokens=self.tokens, store=self.store))
        server.start()
        self.servers[index] = server

    def down(self, index: int) -> None:
        server, self.servers[index] = self.servers[index], None
        if server is not None:
            server.stop()

    def urls(self) -> tuple[str, ...]:
        return tuple(f"https://127.0.0.1:{port}" for port in self.ports)


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path)
    cp.up(0)
    yield cp
    cp.down(0)
    cp.down(1)
    cp.store.close()


def remote(cp: ControlPlane, tmp_path: Path, *, node: str = "n1", servers: tuple[str, ...] | None = None
           ) -> tuple[RemoteStore, FailoverTransport]:
    token = cp.tokens.create(kind="node")["token"]
    transport = FailoverTransport(servers=servers or cp.urls()[:1], token=token, ca_hash=cp.pki.ca_hash, timeout=3)
    store = RemoteStore(transport=transport, node=node, snapshot=tmp_path / f"{node}-pods.json", refresh=0.2)
    return store, transport


def test_register_watch_and_write(cp: ControlPlane, tmp_path: Path) -> None:
    store, _ = remote(cp, tmp_path)
    assert isinstance(store, StoreReadWriter)  # the kubelet's parts take it for the store
    seen: list[tuple[str, str, str]] = []
    store.watch(lambda kind, ns, name: seen.append((kind, ns, name)))
    stored = store.put({"kind": "Node", "metadata": {"name": "n1", "labels": {}}, "spec": {}})
    assert stored["spec"]["podCIDR"] == "10.244.0.0/24"  # the pool's first free /24
    before = pod("before", "n1")
    before["spec"]["containers"][0]["envFrom"] = [{"configMapRef": {"name": "nope", "optional": True}}]
    cp.store.put(before)
    store.start()
    try:
        assert store.synced.wait(5)
        assert [p["metadata"]["name"] for p in store.on_node("Pod", node="n1")] == ["before"]
        cp.store.put(pod("mine", "n1"))
        cp.store.put(pod("theirs", "n2"))
        wait_for(lambda: ("Pod", "default", "mine") in seen, what="the watch to deliver the new pod")
        assert store.get("Pod", "default", "theirs") is None

        def running(p: dict) -> dict:
            p["status"] = {"phase": "Running"}
            return p

        assert store.update("Pod", "default", "mine", running)["status"]["phase"] == "Running"
        assert cp.store.get("Pod", "default", "mine")["status"]["phase"] == "Running"
        # A concurrent write in between: the update reads again and applies mutate to the new object.
        calls: list[str] = []

        def racing(p: dict) -> dict:
            calls.append(p["metadata"]["resourceVersion"])
            if len(calls) == 1:
                cp.store.update("Pod", "default", "mine", lambda q: {**q, "status": {"phase": "Running", "x": 1}})
            p["status"]["message"] = "hello"
            return p

        final = store.update("Pod", "default", "mine", racing)
        assert len(calls) == 2 and final["status"] == {"phase": "Running", "x": 1, "message": "hello"}
        store.record_event(kind="Pod", namespace="default", name="mine", reason="Started", message="started")
        assert [e["reason"] for e in cp.store.events(kind="Pod", name="mine")] == ["Started"]
        assert store.delete("Pod", "default", "mine") is True
        assert cp.store.get("Pod", "default", "mine") is None
        assert store.get("ConfigMap", "default", "nope") is None  # referenced by "before", and absent
        with pytest.raises(ApiRefused) as refused:
            store.get("ConfigMap", "default", "unreferenced")
        assert refused.value.code == 403
        wait_for(lambda: store.get("Node", "", "n1") is not None, what="the Node list refresh")
    finally:
        store.stop()


def test_an_outage_keeps_the_cache_and_the_return_reconciles(cp: ControlPlane, tmp_path: Path) -> None:
    store, _ = remote(cp, tmp_path)
    store.put({"kind": "Node", "metadata": {"name": "n1"}, "spec": {}})
    cp.store.put(pod("a", "n1"))
    cp.store.put(pod("b", "n1"))
    store.start()
    try:
        wait_for(lambda: len(store.on_node("Pod", node="n1")) == 2 and store.connected, what="the first snapshot")
        cp.down(0)
        wait_for(lambda: not store.connected, timeout=20, what="the agent to notice the outage")
        assert sorted(p["metadata"]["name"] for p in store.on_node("Pod", node="n1")) == ["a", "b"]

        def restarted(p: dict) -> dict:  # what only the store knows, as a restart count is
            p["status"]["restarts"] = p["status"].get("restarts", 0) + 1
            return p

        assert store.update("Pod", "default", "a", restarted)["status"]["restarts"] == 1  # kept, not lost
        assert store.update("Pod", "default", "a", restarted)["status"]["restarts"] == 2
        assert store.get("Pod", "default", "a")["status"]["restarts"] == 2
        with pytest.raises(ApiDown):
            store.update("Pod", "default", "unknown", restarted)
        cp.store.delete("Pod", "default", "b")  # changed while the agent could not see
        cp.store.update("Pod", "default", "a", lambda p: {**p, "status": {**p["status"], "phase": "Running"}})
        cp.up(0)
        wait_for(lambda: store.connected and store.get("Pod", "default", "b") is None, timeout=20,
                 what="the snapshot after the outage")
        wait_for(lambda: (cp.store.get("Pod", "default", "a")["status"].get("restarts") == 2
                          and store.get("Pod", "default", "a")["status"].get("restarts") == 2),
                 what="the kept updates replayed onto the control plane's pod")
        assert cp.store.get("Pod", "default", "a")["status"]["phase"] == "Running"  # its own write stays
    finally:
        store.stop()


def test_failover_to_the_next_server(cp: ControlPlane, tmp_path: Path) -> None:
    cp.up(1)
    store, transport = remote(cp, tmp_path, servers=cp.urls())
    store.put({"kind": "Node", "metadata": {"name": "n1"}, "spec": {}})
    store.start()
    try:
        wait_for(lambda: store.connected, what="the first snapshot")
        cp.down(0)
        cp.store.put(pod("late", "n1"))
        wait_for(lambda: store.get("Pod", "default", "late") is not None, timeout=20,
                 what="the watch through the second server")
        assert transport.request("GET", "/api/v1/nodes/n1")["metadata"]["name"] == "n1"
    finally:
        store.stop()


def test_the_snapshot_file_outlives_the_agent(cp: ControlPlane, tmp_path: Path) -> None:
    store, _ = remote(cp, tmp_path)
    store.put({"kind": "Node", "metadata": {"name": "n1"}, "spec": {}})
    cp.store.put(pod("a", "n1"))
    store.start()
    wait_for(lambda: store.get("Pod", "default", "a") is not None, what="the first snapshot")
    store.stop()
    cp.down(0)
    again, _ = remote(cp, tmp_path)  # restarted during the outage
    assert again.synced.is_set()
    assert [p["metadata"]["name"] for p in again.on_node("Pod", node="n1")] == ["a"]


def test_overlapping_pod_cidrs_are_refused(cp: ControlPlane, tmp_path: Path) -> None:
    first, _ = remote(cp, tmp_path, node="n1")
    second, _ = remote(cp, tmp_path, node="n2")
    first.put({"kind": "Node", "metadata": {"name": "n1"}, "spec": {"podCIDR": "10.244.5.0/24"}})
    with pytest.raises(ApiRefused) as caught:
        second.put({"kind": "Node", "metadata": {"name": "n2"}, "spec": {"podCIDR": "10.244.0.0/16"}})
    assert caught.value.code == 409 and "overlaps node n1's 10.244.5.0/24" in str(caught.value)
    assert second.put({"kind": "Node", "metadata": {"name": "n2"}, "spec": {}})["spec"]["podCIDR"] == "10.244.0.0/24"


def test_a_stopped_watch_thread_ends(cp: ControlPlane, tmp_path: Path) -> None:
    store, _ = remote(cp, tmp_path)
    store.put({"kind": "Node", "metadata": {"name": "n1"}, "spec": {}})
    store.start()
    wait_for(lambda: store.connected, what="the first snapshot")
    store.stop()
    cp.store.put(pod("x", "n1"))  # wakes the stream so the thread sees the stop
    wait_for(lambda: not any(t.is_alive() for t in threading.enumerate() if t.name == "remote-pods"),
             timeout=10, what="the watch thread to end")
