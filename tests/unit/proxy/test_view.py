"""ProxySync fed by the store's watch (``ProxyView``): a run reads what changed, not the cluster.

No kernel here: the table is a recorder (its rules are covered by test_sync.py and the
nftables tests); what matters is which objects a run reads, what it renders and when.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.proxy.nftables import NftError
from reconciler.proxy.nftables.model import ProxyState
from reconciler.proxy.sync import ProxySync
from reconciler.store.store import Store
from runtime.fake import FakeDriver

CLUSTER_IP = "10.96.0.10"


class Table:
    """What ProxySync asks of an NftTable, recorded."""

    table = "recorder"
    last_seconds = 0.0

    def __init__(self) -> None:
        self.states: list[ProxyState] = []
        self.forgotten: list[str] = []
        self.neighbours: list[str] = []
        self.refuse = False

    def sync(self, state: ProxyState) -> str:
        if self.refuse:
            raise NftError("refused")
        self.states.append(state)
        return "full"

    def remove_stale_rows(self) -> None:
        pass

    def settle_bridge(self, _bridge: str) -> list[str]:
        return []

    def forget_neighbour(self, ip: str, *, bridge: str) -> None:
        self.neighbours.append(ip)

    def forget_connections(self, ip: str) -> int:
        self.forgotten.append(ip)
        return 0


class Reads:
    """The store's reads, counted by (method, kind)."""

    def __init__(self, store: Store) -> None:
        self.seen: list[tuple[str, str]] = []
        real_get, real_list = store.get, store.list

        def get(kind: str, namespace: str, name: str) -> Any:
            self.seen.append(("get", kind))
            return real_get(kind, namespace, name)

        def listing(kind: str, *args: Any, **kwargs: Any) -> Any:
            self.seen.append(("list", kind))
            return real_list(kind, *args, **kwargs)

        store.get = get  # type: ignore[method-assign]
        store.list = listing  # type: ignore[method-assign]

    def take(self) -> list[tuple[str, str]]:
        seen, self.seen = self.seen, []
        return sorted(seen)


@pytest.fixture()
def store(tmp_path) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    s = Store(tmp_path / "store.db")
    yield s
    s.close()


def pod(name: str, *, ip: str | None = None, node: str = "node1", phase: str = "Running",
        host_network: bool = False, namespace: str = "default") -> dict:
    status: dict = {"phase": phase}
    if ip:
        status["podIP"] = ip
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "uid": f"u-{name}"},
            "spec": {"nodeName": node, "hostNetwork": host_network, "containers": [{"name": "main", "image": "x"}]},
            "status": status}


def service(name: str = "web", *, ip: str = CLUSTER_IP) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "ClusterIP", "clusterIP": ip,
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}


def endpoints(name: str, ready: list[str]) -> dict:
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": "default"},
            "subsets": [{"addresses": [{"ip": ip} for ip in ready],
                         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]}


def running(driver: FakeDriver, name: str, *, namespace: str = "default") -> None:
    from runtime.driver import ContainerRequest, PodRequest

    driver.add_image("x")
    driver.create_pod(PodRequest(namespace=namespace, name=name, uid=f"u-{name}", pod_ip="",
                                 containers=(ContainerRequest(name="main", image="x"),)))
    driver.start_pod(namespace=namespace, name=name)


def watched(store: Store, table: Table, driver: FakeDriver | None = None) -> tuple[ProxySync, list[int]]:
    sync = ProxySync(store=store, table=table, local_drivers={"node1": driver or FakeDriver()})  # type: ignore[arg-type]
    wakes: list[int] = []
    sync.watch_store(wake=lambda: wakes.append(1))
    return sync, wakes


def test_a_run_after_one_pod_change_reads_that_pod_and_renders_nothing(store: Store) -> None:
    for i in range(40):
        store.put(pod(f"p{i}", ip=f"10.244.1.{i + 1}", node="elsewhere"))
    store.put(service())
    store.put(endpoints("web", ["10.244.1.1"]))
    table = Table()
    sync, wakes = watched(store, table)
    reads = Reads(store)
    sync.reconcile("all")  # the first run lists everything once
    assert ("list", "Pod") in reads.take() and len(table.states) == 1

    store.put(pod("p3", ip="10.244.1.4", node="elsewhere", phase="Succeeded"))
    assert wakes
    sync.reconcile("all")
    # One pod decoded, not forty (and the local Node, for its address).
    assert reads.take() == [("get", "Node"), ("get", "Pod")]
    assert len(table.states) == 1  # the rules are made of Services and Endpoints only

    store.put(endpoints("web", ["10.244.1.1", "10.244.1.2"]))
    sync.reconcile("all")
    assert reads.take() == [("get", "Endpoints"), ("get", "Node")]
    assert len(table.states) == 2 and sync.still_serving("10.244.1.2")


def test_the_change_is_marked_before_the_queue_is_woken(store: Store) -> None:
    """A run the wake causes at once (a worker already waiting) sees the change that woke it."""
    table = Table()
    sync = ProxySync(store=store, table=table, local_drivers={})  # type: ignore[arg-type]
    sync.watch_store(wake=lambda: sync.reconcile("all"))
    store.put(service())
    store.put(endpoints("web", ["10.244.1.7"]))
    assert sync.still_serving("10.244.1.7")


def test_a_gone_pods_address_is_forgotten_once_and_only_when_no_pod_holds_it(store: Store) -> None:
    store.put(pod("a", ip="10.244.1.1"))
    store.put(pod("b", ip="10.244.1.2"))
    store.put(pod("again", ip="10.244.1.2", phase="Pending"))  # the address reused already
    store.put(pod("h", ip="198.18.0.1", host_network=True))  # the host's address, not a pod's
    table = Table()
    sync, _ = watched(store, table)
    sync.reconcile("all")
    assert table.forgotten == []  # a new process knows no earlier addresses
    for name in ("a", "b", "h"):
        store.delete("Pod", "default", name)
    sync.reconcile("all")
    sync.reconcile("all")
    assert table.forgotten == ["10.244.1.1"]


def test_names_follow_services_in_running_pods_and_a_new_pod_alone_is_looked_at(store: Store) -> None:
    driver = FakeDriver()
    for name in ("a", "b"):
        running(driver, name)
        store.put(pod(name, ip=f"10.244.1.{ord(name)}"))
    table = Table()
    sync, _ = watched(store, table, driver)
    sync.reconcile("all")
    assert driver.calls_to("set_hosts") == []  # no Service has had an address yet
    store.put(service())  # created later: it reaches the running pods
    sync.reconcile("all")
    assert sorted(c.args["name"] for c in driver.calls_to("set_hosts")) == ["a", "b"]
    driver.clear_calls()
    running(driver, "c")
    store.put(pod("c", ip="10.244.1.99"))
    sync.reconcile("all")
    assert [c.args["name"] for c in driver.calls_to("set_hosts")] == ["c"]
    driver.clear_calls()
    store.put(pod("c", ip="10.244.1.99", phase="Pending"))
    sync.reconcile("all")
    store.put(pod("c", ip="10.244.1.99"))  # seen running again: written again
    sync.reconcile("all")
    sync.reconcile("all")
    assert [c.args["name"] for c in driver.calls_to("set_hosts")] == ["c"]


class _Flaky(FakeDriver):
    def __init__(self) -> None:
        super().__init__()
        self.fail = True

    def set_hosts(self, *, namespace: str, name: str, hosts: tuple[tuple[str, str], ...]) -> bool:
        super().set_hosts(namespace=namespace, name=name, hosts=hosts)
        if self.fail:
            raise OSError("permission denied")
        return True


def test_a_pod_whose_file_failed_is_tried_again_on_the_next_run_whatever_changed(store: Store) -> None:
    driver = _Flaky()
    running(driver, "a")
    store.put(service())
    store.put(pod("a", ip="10.244.1.1"))
    sync, _ = watched(store, Table(), driver)
    sync.reconcile("all")
    store.put(pod("other", ip="10.244.1.2", node="elsewhere"))  # a change that is not pod a's
    driver.fail = False
    sync.reconcile("all")
    sync.reconcile("all")
    assert [c.args["name"] for c in driver.calls_to("set_hosts")] == ["a", "a"]


def test_a_refused_write_is_rendered_again_on_the_next_run(store: Store) -> None:
    table = Table()
    store.put(service())
    sync, _ = watched(store, table)
    table.refuse = True
    assert sync.reconcile("all") is not None  # requeued
    table.refuse = False
    sync.reconcile("all")
    assert len(table.states) == 1


def test_a_closed_sync_is_no_longer_woken(store: Store) -> None:
    sync, wakes = watched(store, Table())
    store.put(service())
    assert wakes == [1]
    sync.close()
    store.put(service("other", ip="10.96.0.11"))
    store.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}})
    assert wakes == [1]
