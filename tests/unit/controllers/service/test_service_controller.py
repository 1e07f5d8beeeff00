"""The Service controller: ClusterIP and NodePort allocation on a real Store in a tmp dir."""
from __future__ import annotations

import threading

import pytest

from reconciler.controllers.service.controller import (
    ServiceController,
    allocated_fields,
    carry_allocations,
)
from reconciler.core.clock import ManualClock
from reconciler.core.keys import SERVICE_ALLOCATIONS_KEY
from reconciler.store.store import Store


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path / "store.db")
    yield s
    s.close()


def controller(store: Store, cidr: str = "127.96.0.0/16", ports: tuple[int, int] = (30000, 32767)) -> ServiceController:
    return ServiceController(store=store, clock=ManualClock(), service_cidr=cidr, node_port_range=ports)


def service(name: str, *, namespace: str = "default", type_: str = "ClusterIP", cluster_ip: str | None = None,
            ports: list[dict] | None = None) -> dict:
    spec: dict = {"type": type_, "selector": {"app": name},
                  "ports": ports if ports is not None else [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    if cluster_ip is not None:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def put_and_reconcile(store: Store, ctl: ServiceController, svc: dict):
    store.put(svc)
    result = ctl.reconcile((svc["metadata"]["namespace"], svc["metadata"]["name"]))
    return store.get("Service", svc["metadata"]["namespace"], svc["metadata"]["name"]), result


def reapply_from_git(store: Store, svc: dict) -> None:
    """What the applier does on a new commit: Git's spec replaces the live spec."""
    def mutate(cur):
        cur["spec"] = svc["spec"]
        return cur
    store.update("Service", svc["metadata"]["namespace"], svc["metadata"]["name"], mutate)


def warnings(store: Store, name: str) -> list[dict]:
    return [e for e in store.events(kind="Service", name=name) if e["type"] == "Warning"]


def test_allocates_from_the_cidr_skipping_network_and_first_address(store):
    ctl = controller(store)
    a, result = put_and_reconcile(store, ctl, service("a"))
    b, _ = put_and_reconcile(store, ctl, service("b"))
    assert result is None
    assert a["spec"]["clusterIP"] == "127.96.0.2" and a["spec"]["clusterIPs"] == ["127.96.0.2"]
    assert b["spec"]["clusterIP"] == "127.96.0.3"
    assert a["status"] == {"loadBalancer": {}}
    assert "nodePort" not in a["spec"]["ports"][0]


def test_allocation_is_stable_when_git_reapplies_without_it(store):
    ctl = controller(store)
    declared = service("web", type_="NodePort")
    first, _ = put_and_reconcile(store, ctl, declared)
    put_and_reconcile(store, ctl, service("other", type_="NodePort"))  # competes for the next values
    reapply_from_git(store, declared)
    assert "clusterIP" not in store.get("Service", "default", "web")["spec"]
    ctl.reconcile(("default", "web"))
    again = store.get("Service", "default", "web")
    assert again["spec"]["clusterIP"] == first["spec"]["clusterIP"]
    assert again["spec"]["ports"][0]["nodePort"] == first["spec"]["ports"][0]["nodePort"] == 30000
    # A fresh controller (a daemon restart) sees the same record.
    rv = again["metadata"]["resourceVersion"]
    controller(store).reconcile(("default", "web"))
    assert store.get("Service", "default", "web")["metadata"]["resourceVersion"] == rv


def test_second_reconcile_writes_nothing(store):
    ctl = controller(store)
    svc, _ = put_and_reconcile(store, ctl, service("web", type_="LoadBalancer"))
    rv = svc["metadata"]["resourceVersion"]
    assert ctl.reconcile(("default", "web")) is None
    assert store.get("Service", "default", "web")["metadata"]["resourceVersion"] == rv


def test_declared_cluster_ip_in_range_and_free_is_honoured(store):
    ctl = controller(store)
    svc, result = put_and_reconcile(store, ctl, service("web", cluster_ip="127.96.1.10"))
    assert result is None
    assert svc["spec"]["clusterIP"] == "127.96.1.10" and svc["spec"]["clusterIPs"] == ["127.96.1.10"]
    assert store.kv_get(SERVICE_ALLOCATIONS_KEY)["clusterIPs"]["127.96.1.10"]["service"] == "default/web"
    assert warnings(store, "web") == []


@pytest.mark.parametrize("ip, reason", [
    ("10.96.0.10", "ClusterIPNotInRange"),
    ("127.96.0.0", "ClusterIPNotInRange"),   # the network address
    ("127.96.0.1", "ClusterIPNotInRange"),   # the first address is reserved
    ("127.96.255.255", "ClusterIPNotInRange"),  # broadcast
])
def test_declared_cluster_ip_outside_the_range_is_refused(store, ip, reason):
    ctl = controller(store)
    svc, result = put_and_reconcile(store, ctl, service("web", cluster_ip=ip))
    assert svc["spec"]["clusterIP"] == ip  # the user's declaration stays visible
    assert svc["spec"]["clusterIPs"] == []  # but nothing was allocated
    assert result is not None and result.requeue_after
    (event,) = warnings(store, "web")
    assert event["reason"] == reason and ip in event["message"]


def test_declared_cluster_ip_taken_is_refused_and_the_holder_keeps_it(store):
    ctl = controller(store)
    holder, _ = put_and_reconcile(store, ctl, service("first"))
    taken = holder["spec"]["clusterIP"]
    second, _ = put_and_reconcile(store, ctl, service("second", cluster_ip=taken))
    assert second["spec"]["clusterIPs"] == []
    (event,) = warnings(store, "second")
    assert event["reason"] == "ClusterIPAlreadyAllocated" and "default/first" in event["message"]
    ctl.reconcile(("default", "first"))
    assert store.get("Service", "default", "first")["spec"]["clusterIPs"] == [taken]
    # Once the holder is gone, the retry grants it.
    store.delete("Service", "default", "first")
    ctl.reconcile(("default", "first"))
    ctl.reconcile(("default", "second"))
    assert store.get("Service", "default", "second")["spec"]["clusterIPs"] == [taken]


def test_a_refusal_is_not_repeated_on_every_reconcile(store):
    ctl = controller(store)
    put_and_reconcile(store, ctl, service("web", cluster_ip="10.0.0.1"))
    for _ in range(3):
        ctl.reconcile(("default", "web"))
    (event,) = warnings(store, "web")
    assert event["count"] == 1


def test_dynamic_allocation_avoids_ips_other_services_declare(store):
    ctl = controller(store)
    store.put(service("pending", cluster_ip="127.96.0.2"))  # not reconciled yet
    svc, _ = put_and_reconcile(store, ctl, service("web"))
    assert svc["spec"]["clusterIP"] == "127.96.0.3"
    ctl.reconcile(("default", "pending"))
    assert store.get("Service", "default", "pending")["spec"]["clusterIPs"] == ["127.96.0.2"]


def test_headless_gets_no_ip(store):
    ctl = controller(store)
    svc, _ = put_and_reconcile(store, ctl, service("db", cluster_ip="None"))
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["clusterIPs"] == ["None"]
    assert store.kv_get(SERVICE_ALLOCATIONS_KEY, {}).get("clusterIPs", {}) == {}


def test_deleting_a_service_frees_its_ip(store):
    ctl = controller(store)
    put_and_reconcile(store, ctl, service("a"))
    store.delete("Service", "default", "a")
    ctl.reconcile(("default", "a"))
    assert store.kv_get(SERVICE_ALLOCATIONS_KEY)["clusterIPs"] == {}
    b, _ = put_and_reconcile(store, ctl, service("b"))
    assert b["spec"]["clusterIP"] == "127.96.0.2"


def test_a_full_range_is_a_warning(store):
    ctl = controller(store, cidr="127.96.0.0/30")  # .0 network, .1 reserved, .2 free, .3 broadcast
    a, _ = put_and_reconcile(store, ctl, service("a"))
    b, result = put_and_reconcile(store, ctl, service("b"))
    assert a["spec"]["clusterIP"] == "127.96.0.2"
    assert "clusterIP" not in b["spec"] and b["spec"]["clusterIPs"] == []
    assert result is not None
    assert [e["reason"] for e in warnings(store, "b")] == ["ClusterIPRangeFull"]


def test_node_ports_for_each_port_declared_ones_honoured(store):
    ctl = controller(store)
    ports = [{"name": "http", "port": 80, "protocol": "TCP"},
             {"name": "admin", "port": 81, "protocol": "TCP", "nodePort": 30000},
             {"name": "metrics", "port": 82, "protocol": "TCP"}]
    svc, _ = put_and_reconcile(store, ctl, service("web", type_="NodePort", ports=ports))
    assert [p["nodePort"] for p in svc["spec"]["ports"]] == [30001, 30000, 30002]
    assert warnings(store, "web") == []


def test_declared_node_port_taken_by_another_service_is_port_already_allocated(store):
    ctl = controller(store)
    first, _ = put_and_reconcile(store, ctl, service("first", type_="NodePort"))
    taken = first["spec"]["ports"][0]["nodePort"]
    ports = [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": taken}]
    second, result = put_and_reconcile(store, ctl, service("second", type_="LoadBalancer", ports=ports))
    assert result is not None
    (event,) = warnings(store, "second")
    assert event["reason"] == "PortAlreadyAllocated" and str(taken) in event["message"]
    assert store.kv_get(SERVICE_ALLOCATIONS_KEY)["nodePorts"][str(taken)]["service"] == "default/first"
    # A third Service never gets the contested number either.
    third, _ = put_and_reconcile(store, ctl, service("third", type_="NodePort"))
    assert third["spec"]["ports"][0]["nodePort"] not in (taken,)


def test_changing_to_cluster_ip_releases_node_ports(store):
    ctl = controller(store)
    web = service("web", type_="NodePort")
    put_and_reconcile(store, ctl, web)
    as_cluster_ip = service("web")
    reapply_from_git(store, as_cluster_ip)
    ctl.reconcile(("default", "web"))
    assert store.kv_get(SERVICE_ALLOCATIONS_KEY)["nodePorts"] == {}
    other, _ = put_and_reconcile(store, ctl, service("other", type_="NodePort"))
    assert other["spec"]["ports"][0]["nodePort"] == 30000


def test_a_service_replaced_in_the_meantime_is_not_overwritten(store):
    ctl = controller(store)
    store.put(service("web"))
    stale = store.get("Service", "default", "web")

    real_get = store.get
    calls = {"n": 0}

    def get_then_race(kind, namespace, name):
        obj = real_get(kind, namespace, name)
        if kind == "Service" and calls["n"] == 0:
            calls["n"] += 1
            reapply_from_git(store, service("web", cluster_ip="127.96.9.9"))  # a commit lands meanwhile
            return stale
        return obj

    store.get = get_then_race  # type: ignore[method-assign]
    try:
        ctl.reconcile(("default", "web"))
    finally:
        store.get = real_get  # type: ignore[method-assign]
    assert store.get("Service", "default", "web")["spec"]["clusterIP"] == "127.96.9.9"
    ctl.reconcile(("default", "web"))
    assert store.get("Service", "default", "web")["spec"]["clusterIPs"] == ["127.96.9.9"]


def test_concurrent_reconciles_never_hand_out_one_ip_twice(store):
    ctl = controller(store)
    names = [f"s{i}" for i in range(40)]
    for n in names:
        store.put(service(n, type_="NodePort"))
    errors: list[BaseException] = []

    def work(chunk):
        try:
            for n in chunk:
                ctl.reconcile(("default", n))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(names[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    services = [store.get("Service", "default", n) for n in names]
    ips = [s["spec"]["clusterIP"] for s in services]
    node_ports = [s["spec"]["ports"][0]["nodePort"] for s in services]
    assert len(set(ips)) == len(ips) == 40
    assert len(set(node_ports)) == 40


def test_allocated_fields_and_carry_allocations():
    live = service("web", type_="NodePort")
    live["spec"]["clusterIP"] = "127.96.0.7"
    live["spec"]["clusterIPs"] = ["127.96.0.7"]
    live["spec"]["ports"][0]["nodePort"] = 30123
    assert allocated_fields(live) == {"clusterIP": "127.96.0.7", "clusterIPs": ["127.96.0.7"],
                                      "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30123}]}
    desired = service("web", type_="NodePort")
    merged = carry_allocations(desired=desired, live=live)
    assert merged["spec"]["clusterIP"] == "127.96.0.7" and merged["spec"]["ports"][0]["nodePort"] == 30123
    assert "clusterIP" not in desired["spec"]  # not mutated
    # Declared values win; a type change to ClusterIP drops node ports.
    declared = service("web", type_="NodePort", cluster_ip="127.96.0.9",
                       ports=[{"port": 80, "protocol": "TCP", "nodePort": 30500}])
    merged = carry_allocations(desired=declared, live=live)
    assert merged["spec"]["clusterIP"] == "127.96.0.9" and "clusterIPs" not in merged["spec"]
    assert merged["spec"]["ports"][0]["nodePort"] == 30500
    merged = carry_allocations(desired=service("web"), live=live)
    assert "nodePort" not in merged["spec"]["ports"][0]
    assert carry_allocations(desired=desired, live=None) == desired


def test_carried_allocations_leave_the_controller_nothing_to_write(store):
    ctl = controller(store)
    web = service("web", type_="NodePort")
    live, _ = put_and_reconcile(store, ctl, web)
    reapply_from_git(store, carry_allocations(desired=web, live=live))
    rv = store.get("Service", "default", "web")["metadata"]["resourceVersion"]
    ctl.reconcile(("default", "web"))
    assert store.get("Service", "default", "web")["metadata"]["resourceVersion"] == rv


def test_bad_configuration_is_one_sentence():
    with pytest.raises(ValueError, match="too small"):
        ServiceController(store=None, clock=ManualClock(), service_cidr="127.96.0.0/31")
    with pytest.raises(ValueError, match="range"):
        ServiceController(store=None, clock=ManualClock(), service_cidr="127.96.0.0/16", node_port_range=(5, 2))
