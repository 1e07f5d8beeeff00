"""ProxySync's engine cost: which pods it asks the engine about (their netns), on a real Store.

The fake driver records every ``netns_path`` call (it knows no namespaces, so the
proxy never enters one here); Services reached from inside real pods are covered
end to end by tests/test_services.py.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.proxy.sync import ProxySync
from reconciler.proxy.userspace import ServiceProxy
from reconciler.store.store import Store
from runtime.fake import FakeDriver


@pytest.fixture()
def store(tmp_path) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    s = Store(tmp_path / "store.db")
    yield s
    s.close()


def pod(name: str, *, namespace: str = "default", node: str = "node1", phase: str = "Running",
        host_network: bool = False) -> dict:
    spec: dict = {"nodeName": node, "containers": [{"name": "main", "image": "web:1"}]}
    if host_network:
        spec["hostNetwork"] = True
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
            "spec": spec, "status": {"phase": phase, "podIP": "127.244.0.9"}}


def service(name: str, *, namespace: str = "other", cluster_ip: str | None = "127.96.0.10") -> dict:
    spec: dict = {"type": "ClusterIP", "selector": {"app": name},
                  "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    spec["clusterIP"] = cluster_ip if cluster_ip is not None else "None"
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def looked_up(driver: FakeDriver) -> list[tuple[str, str]]:
    return sorted((c.args["namespace"], c.args["name"]) for c in driver.calls_to("netns_path"))


def test_no_netns_lookups_while_no_service_has_a_cluster_ip(store: Store) -> None:
    driver = FakeDriver()
    sync = ProxySync(store=store, proxy=ServiceProxy(), local_drivers={"node1": driver})
    for name in ("a", "b", "c"):
        store.put(pod(name))
    sync.reconcile("all")
    assert looked_up(driver) == []
    # A headless Service opens nothing inside pods either.
    store.put(service("headless", cluster_ip=None))
    sync.reconcile("all")
    assert looked_up(driver) == []


def test_a_service_in_any_namespace_makes_every_running_local_pod_looked_up(store: Store) -> None:
    driver = FakeDriver()
    sync = ProxySync(store=store, proxy=ServiceProxy(), local_drivers={"node1": driver})
    store.put(pod("a"))
    store.put(pod("b", namespace="team"))
    store.put(pod("pending", phase="Pending"))
    store.put(pod("host", host_network=True))
    store.put(pod("remote", node="elsewhere"))
    sync.reconcile("all")
    assert looked_up(driver) == []
    # The Service lives in a namespace with no pods at all: pods elsewhere still reach it by
    # "web.other" or its ClusterIP, so each of them gets its listeners.
    store.put(service("web", namespace="other"))
    sync.reconcile("all")
    assert looked_up(driver) == [("default", "a"), ("team", "b")]
