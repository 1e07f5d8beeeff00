"""ProxySync against a real kernel: the store's Services and Endpoints become nftables rules.

Each test gets its own namespaces (``netlab.Lab``: a node with a bridge ``br0`` and pods
serving on :8080), a real Store, and a ``NftTable`` inside the lab's node namespace, so
nothing touches the host's own tables. The fake driver stands in only for the engine's
hosts files (pure bookkeeping here; real pods' files are covered by tests/e2e/test_services.py).
"""
from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from reconciler.proxy.nftables import NftTable
from reconciler.proxy.sync import ProxySync
from reconciler.store.store import Store
from runtime.fake import FakeDriver
from tests.unit.proxy.nftables.netlab import SERVER_PORT, SUBNET, Lab, usable
from tests.unit.proxy.nftables.test_kernel import served_by

pytestmark = pytest.mark.skipif(bool(usable()), reason=usable() or "usable")

CLUSTER_IP = "10.96.0.10"
NODE_PORT = 30080


@pytest.fixture()
def store(tmp_path) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    s = Store(tmp_path / "store.db")
    yield s
    s.close()


def _lab(**kwargs) -> Iterator[Lab]:  # type: ignore[no-untyped-def]
    lab = Lab(**kwargs)
    try:
        yield lab.start()
    finally:
        lab.close()
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
        assert lab.tag not in left, "a test namespace was left behind"


@pytest.fixture()
def lab() -> Iterator[Lab]:
    yield from _lab()


def node(name: str = "node1") -> dict:
    return {"kind": "Node", "metadata": {"name": name, "namespace": ""},
            "status": {"addresses": [{"type": "InternalIP", "address": f"{SUBNET}.1"}]}}


def service(name: str = "web", *, ip: str = CLUSTER_IP, node_port: int | None = NODE_PORT) -> dict:
    port: dict = {"name": "http", "port": 80, "targetPort": SERVER_PORT, "protocol": "TCP"}
    if node_port:
        port["nodePort"] = node_port
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "NodePort" if node_port else "ClusterIP", "clusterIP": ip, "ports": [port]}}


def endpoints(name: str, ready: list[str], not_ready: list[str] = ()) -> dict:  # type: ignore[assignment]
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": "default"},
            "subsets": [{"addresses": [{"ip": ip} for ip in ready],
                         "notReadyAddresses": [{"ip": ip} for ip in not_ready],
                         "ports": [{"name": "http", "port": SERVER_PORT, "protocol": "TCP"}]}]}


def make_sync(store: Store, lab: Lab, *, table: str = "reconciler", driver: FakeDriver | None = None,
              bridges: tuple[str, ...] = ()) -> tuple[ProxySync, NftTable]:
    nft = NftTable(netns=lab.node, table=table)
    nft.ensure_sysctls()
    return ProxySync(store=store, table=nft, local_drivers={"node1": driver or FakeDriver()},
                     bridges=lambda: bridges), nft


def test_services_and_ready_endpoints_become_rules(store: Store, lab: Lab) -> None:
    store.put(node())
    store.put(service())
    store.put(endpoints("web", [lab.pod_ip(0), lab.pod_ip(1)], not_ready=[lab.pod_ip(2)]))
    sync, nft = make_sync(store, lab)
    assert sync.reconcile("all") is None
    assert nft.last_sync == "full"
    ready = {lab.pod_ip(0), lab.pod_ip(1)}
    assert set(served_by(lab.connect(lab.node, CLUSTER_IP, 80, count=30))) == ready
    # The NodePort answers on 127.0.0.1 and on the Node's own address (read from its status).
    for address in ("127.0.0.1", f"{SUBNET}.1"):
        assert set(served_by(lab.connect(lab.node, address, NODE_PORT, count=20))) <= ready
    assert sync.still_serving(lab.pod_ip(0)) and not sync.still_serving(lab.pod_ip(2))

    # An endpoint becoming ready is one partial transaction; the rules follow.
    store.put(endpoints("web", [lab.pod_ip(2)]))
    sync.reconcile("all")
    assert nft.last_sync == "partial"
    assert served_by(lab.connect(lab.node, CLUSTER_IP, 80, count=5)) == {lab.pod_ip(2): 5}
    assert not sync.still_serving(lab.pod_ip(0))
    # Nothing the rules are made of changed: nothing is rendered, the kernel is not asked.
    renders: list[object] = []
    real_sync = nft.sync
    nft.sync = lambda state: (renders.append(state), real_sync(state))[1]  # type: ignore[method-assign]
    sync.reconcile("all")
    assert renders == []

    # A new process (a restarted daemon) knows nothing of the kernel: its first sync is a full
    # rebuild, and the rules were there all along.
    assert served_by(lab.connect(lab.node, CLUSTER_IP, 80, count=3)) == {lab.pod_ip(2): 3}
    again, nft2 = make_sync(store, lab)
    again.reconcile("all")
    assert nft2.last_sync == "full"

    # No ready endpoint: refused at once, not a timeout.
    store.put(endpoints("web", [], not_ready=[lab.pod_ip(0)]))
    again.reconcile("all")
    [result] = lab.connect(lab.node, CLUSTER_IP, 80, timeout=2.0)
    assert result.get("error") == "ECONNREFUSED" and result["seconds"] < 1.0, result


def test_hairpin_mode_is_set_on_the_local_bridges(store: Store) -> None:
    for lab in _lab(pods=2, hairpin=False):
        store.put(service(node_port=None))
        store.put(endpoints("web", [lab.pod_ip(0)]))  # every connection from pod 0 is a hairpin
        sync, _ = make_sync(store, lab, bridges=("br0",))
        sync.reconcile("all")
        assert served_by(lab.connect(lab.pod_ns(0), CLUSTER_IP, 80, count=3)) == {lab.pod_ip(0): 3}


def test_two_daemons_on_one_kernel_keep_their_own_tables(store: Store, lab: Lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    other = Store(tmp_path / "other.db")
    try:
        store.put(service("web"))
        store.put(endpoints("web", [lab.pod_ip(0)]))
        other.put(service("api", ip="10.96.1.10", node_port=30081))
        other.put(endpoints("api", [lab.pod_ip(1)]))
        first, nft1 = make_sync(store, lab, table="rctest-a")
        second, nft2 = make_sync(other, lab, table="rctest-b")
        first.reconcile("all")
        second.reconcile("all")
        assert served_by(lab.connect(lab.node, CLUSTER_IP, 80, count=2)) == {lab.pod_ip(0): 2}
        assert served_by(lab.connect(lab.node, "10.96.1.10", 80, count=2)) == {lab.pod_ip(1): 2}
        nft1.cleanup()
        assert not nft1.exists() and nft2.exists()
        assert served_by(lab.connect(lab.node, "127.0.0.1", 30081, count=2)) == {lab.pod_ip(1): 2}
    finally:
        other.close()


def test_running_local_pods_get_service_names_in_their_hosts_file(store: Store, lab: Lab) -> None:
    driver = FakeDriver()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": "team", "uid": "u1"},
           "spec": {"nodeName": "node1", "containers": [{"name": "main", "image": "x"}]},
           "status": {"phase": "Running", "podIP": lab.pod_ip(0)}}
    store.put(pod)
    store.put({**pod, "metadata": {**pod["metadata"], "name": "elsewhere", "uid": "u2"},
               "spec": {**pod["spec"], "nodeName": "node2"}})
    sync, _ = make_sync(store, lab, driver=driver)
    sync.reconcile("all")
    assert driver.calls_to("set_hosts") == []  # no Service has had an address: nothing to write
    store.put(service(node_port=None))
    sync.reconcile("all")
    [call] = driver.calls_to("set_hosts")
    assert (call.args["namespace"], call.args["name"]) == ("team", "client")
    assert ("web.default", CLUSTER_IP) in call.args["hosts"] and ("web", CLUSTER_IP) not in call.args["hosts"]
    listed: list[str] = []
    real_list = store.list
    store.list = lambda kind, *a, **kw: (listed.append(kind), real_list(kind, *a, **kw))[1]  # type: ignore[method-assign]
    sync.reconcile("all")
    assert len(driver.calls_to("set_hosts")) == 1  # unchanged: not written again
    # A run follows every Pod change: it decodes the pods once, not once per pod pass.
    assert listed.count("Pod") == 1


def test_a_started_pod_s_address_gets_a_fresh_arp_entry_once(store: Store, lab: Lab) -> None:
    # A pod IP is reused with a new MAC; a stale entry, kept alive by traffic, would blackhole it.
    stale = f"{SUBNET}.9"
    subprocess.run(["ip", "-n", lab.node, "neigh", "replace", stale, "lladdr", "02:00:00:00:00:09", "dev", "br0",
                    "nud", "reachable"], check=True, capture_output=True, timeout=30)
    nft = NftTable(netns=lab.node)
    sync = ProxySync(store=store, table=nft, local_drivers={"node1": FakeDriver()},
                     bridge_of=lambda node: "br0" if node == "node1" else None)

    def entry() -> str:
        return subprocess.run(["ip", "-n", lab.node, "neigh", "show", stale, "dev", "br0"], capture_output=True,
                              text=True, check=True).stdout.strip()

    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "new", "namespace": "default", "uid": "u-new"},
           "spec": {"nodeName": "node1", "containers": [{"name": "main", "image": "x"}]},
           "status": {"phase": "Pending", "podIP": stale}}
    store.put(pod)
    sync.reconcile("all")
    assert "02:00:00:00:00:09" in entry()  # not started yet: nothing to do
    store.put({**pod, "status": {"phase": "Running", "podIP": stale}})
    sync.reconcile("all")
    assert entry() == ""
    subprocess.run(["ip", "-n", lab.node, "neigh", "replace", stale, "lladdr", "02:00:00:00:00:10", "dev", "br0",
                    "nud", "reachable"], check=True, capture_output=True, timeout=30)
    sync.reconcile("all")
    assert "02:00:00:00:00:10" in entry()  # once per pod: its own, fresh entry stays


def test_a_pod_cidr_without_its_bridge_is_unreachable_not_routed_away(lab: Lab) -> None:
    nft = NftTable(netns=lab.node)
    nft.ensure_pod_cidr_fallback(f"{SUBNET}.0/24")  # the bridge br0 holds this subnet: it still wins
    nft.ensure_pod_cidr_fallback("10.244.61.0/24")  # no bridge (netavark removed it with its last pod)

    def route_get(ip: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "-n", lab.node, "route", "get", ip], capture_output=True, text=True)

    assert "dev br0" in route_get(lab.pod_ip(0)).stdout
    assert served_by(lab.connect(lab.node, lab.pod_ip(0), SERVER_PORT)) == {lab.pod_ip(0): 1}
    [failed] = lab.connect(lab.node, "10.244.61.5", SERVER_PORT, timeout=2.0)
    assert failed.get("error") == "EHOSTUNREACH" and failed["seconds"] < 1.0, failed
    assert nft.remove_pod_cidr_fallback("10.244.61.0/24") and not nft.remove_pod_cidr_fallback("10.244.61.0/24")


def test_a_removed_pods_connections_are_forgotten(store: Store, lab: Lab) -> None:
    """Not an unready one's (it may be draining), nor a host-network pod's (the host's address)."""
    def pod(name: str, ip: str, *, host_network: bool = False) -> dict:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                "spec": {"nodeName": "node1", "hostNetwork": host_network, "containers": []},
                "status": {"phase": "Running", "podIP": ip}}

    store.put(service(node_port=None))
    store.put(endpoints("web", [lab.pod_ip(0), lab.pod_ip(1)]))
    for name, ip in (("a", lab.pod_ip(0)), ("b", lab.pod_ip(1))):
        store.put(pod(name, ip))
    store.put(pod("h", f"{SUBNET}.1", host_network=True))
    sync, nft = make_sync(store, lab)
    forgotten: list[str] = []
    nft.forget_connections = lambda ip: forgotten.append(ip) or 0  # type: ignore[method-assign]
    sync.reconcile("all")
    store.put(endpoints("web", [lab.pod_ip(1)], not_ready=[lab.pod_ip(0)]))  # a: unready, still there
    sync.reconcile("all")
    assert forgotten == []
    store.delete("Pod", "default", "a")
    store.delete("Pod", "default", "h")
    sync.reconcile("all")
    assert forgotten == [lab.pod_ip(0)]
