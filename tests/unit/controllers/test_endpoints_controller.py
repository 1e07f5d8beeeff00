"""The Endpoints controller: pods selected by a Service, on a real Store in a tmp dir."""
from __future__ import annotations

import pytest

from reconciler.controllers.endpoints import EndpointsController, desired_subsets, services_selecting
from reconciler.core.clock import ManualClock, to_rfc3339
from reconciler.store.store import Store


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path / "store.db")
    yield s
    s.close()


@pytest.fixture()
def ctl(store):
    return EndpointsController(store=store, clock=ManualClock())


def service(name="web", *, namespace="default", selector=None, ports=None, cluster_ip=None, **spec_extra) -> dict:
    spec = {"type": "ClusterIP", "selector": {"app": "web"} if selector is None else selector,
            "ports": ports if ports is not None else [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
            **spec_extra}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": {"tier": "front"}}, "spec": spec}


def pod(name, *, ip="127.244.0.2", ready=True, labels=None, namespace="default", node="node1",
        terminating=False, phase="Running", ports=None) -> dict:
    status: dict = {"phase": phase}
    if ip:
        status["podIP"] = ip
    status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False",
                             "lastTransitionTime": to_rfc3339(1_700_000_000)}]
    meta: dict = {"name": name, "namespace": namespace, "labels": {"app": "web"} if labels is None else labels}
    if terminating:
        meta["deletionTimestamp"] = to_rfc3339(1_800_000_030)
    containers = [{"name": "main", "image": "web:1",
                   "ports": ports if ports is not None else [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"nodeName": node, "containers": containers},
            "status": status}


def endpoints(store, name="web", namespace="default"):
    return store.get("Endpoints", namespace, name)


def ips(subset, field="addresses"):
    return [a["ip"] for a in subset.get(field) or []]


def test_ready_and_not_ready_addresses_with_target_refs(store, ctl):
    svc = store.put(service())
    p1 = store.put(pod("web-a", ip="127.244.0.3"))
    store.put(pod("web-b", ip="127.244.0.2", ready=False))
    ctl.reconcile(("default", "web"))
    ep = endpoints(store)
    assert ep["metadata"]["ownerReferences"][0]["uid"] == svc["metadata"]["uid"]
    assert ep["metadata"]["ownerReferences"][0]["kind"] == "Service"
    assert ep["metadata"]["labels"] == {"tier": "front"}
    (subset,) = ep["subsets"]
    assert subset["addresses"] == [{"ip": "127.244.0.3", "nodeName": "node1",
                                    "targetRef": {"kind": "Pod", "name": "web-a", "namespace": "default",
                                                  "uid": p1["metadata"]["uid"]}}]
    assert ips(subset, "notReadyAddresses") == ["127.244.0.2"]
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]


def test_terminating_finished_unaddressed_and_unselected_pods_are_left_out(store, ctl):
    store.put(service())
    store.put(pod("ok", ip="127.244.0.2"))
    store.put(pod("terminating", ip="127.244.0.3", terminating=True))
    store.put(pod("done", ip="127.244.0.4", phase="Succeeded"))
    store.put(pod("no-ip", ip=None))
    store.put(pod("other-app", ip="127.244.0.5", labels={"app": "db"}))
    store.put(pod("other-ns", ip="127.244.0.6", namespace="prod"))
    ctl.reconcile(("default", "web"))
    (subset,) = endpoints(store)["subsets"]
    assert ips(subset) == ["127.244.0.2"] and "notReadyAddresses" not in subset


def test_a_pod_marked_for_deletion_leaves_addresses_at_once(store, ctl):
    store.put(service())
    store.put(pod("a", ip="127.244.0.2"))
    store.put(pod("b", ip="127.244.0.3"))
    ctl.reconcile(("default", "web"))
    assert ips(endpoints(store)["subsets"][0]) == ["127.244.0.2", "127.244.0.3"]

    def mark(cur):
        cur["metadata"]["deletionTimestamp"] = to_rfc3339(1_800_000_030)
        return cur

    store.update("Pod", "default", "a", mark)  # still Ready: its containers have not had SIGTERM yet
    ctl.reconcile(("default", "web"))
    assert ips(endpoints(store)["subsets"][0]) == ["127.244.0.3"]


def test_publish_not_ready_addresses(store, ctl):
    store.put(service(publishNotReadyAddresses=True))
    store.put(pod("a", ip="127.244.0.2", ready=False))
    store.put(pod("b", ip="127.244.0.3", terminating=True))
    ctl.reconcile(("default", "web"))
    (subset,) = endpoints(store)["subsets"]
    assert ips(subset) == ["127.244.0.2", "127.244.0.3"]


def test_named_target_port_resolves_per_pod_into_separate_subsets(store, ctl):
    store.put(service(ports=[{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}]))
    store.put(pod("old-1", ip="127.244.0.2", ports=[{"name": "http", "containerPort": 8080}]))
    store.put(pod("old-2", ip="127.244.0.10", ports=[{"name": "http", "containerPort": 8080}]))
    store.put(pod("new-1", ip="127.244.0.3", ports=[{"name": "http", "containerPort": 9090}]))
    store.put(pod("unnamed", ip="127.244.0.4", ports=[{"containerPort": 8080}]))  # cannot resolve "http"
    ctl.reconcile(("default", "web"))
    subsets = endpoints(store)["subsets"]
    assert [(s["ports"][0]["port"], ips(s)) for s in subsets] == [
        (8080, ["127.244.0.2", "127.244.0.10"]),  # numeric IP order: .2 before .10
        (9090, ["127.244.0.3"]),
    ]
    assert all(s["ports"][0]["name"] == "web" for s in subsets)


def test_target_port_defaults_and_numbers(store, ctl):
    store.put(service(ports=[{"port": 80, "protocol": "TCP"}, {"name": "alt", "port": 81, "targetPort": 9000}]))
    store.put(pod("a", ip="127.244.0.2"))
    ctl.reconcile(("default", "web"))
    (subset,) = endpoints(store)["subsets"]
    assert subset["ports"] == [{"port": 80, "protocol": "TCP"}, {"name": "alt", "port": 9000, "protocol": "TCP"}]


def test_a_pod_resolving_only_some_ports_serves_only_those(store, ctl):
    store.put(service(ports=[{"name": "http", "port": 80, "targetPort": "http"},
                             {"name": "admin", "port": 81, "targetPort": "admin"}]))
    store.put(pod("both", ip="127.244.0.2", ports=[{"name": "http", "containerPort": 8080},
                                                   {"name": "admin", "containerPort": 8081}]))
    store.put(pod("http-only", ip="127.244.0.3", ports=[{"name": "http", "containerPort": 8080}]))
    ctl.reconcile(("default", "web"))
    by_ports = {tuple(p["name"] for p in s["ports"]): ips(s) for s in endpoints(store)["subsets"]}
    assert by_ports == {("admin", "http"): ["127.244.0.2"], ("http",): ["127.244.0.3"]}


def test_writes_only_when_different(store, ctl):
    store.put(service())
    store.put(pod("a", ip="127.244.0.2"))
    ctl.reconcile(("default", "web"))
    rv = endpoints(store)["metadata"]["resourceVersion"]
    ctl.reconcile(("default", "web"))
    store.put(pod("unrelated", ip="127.244.0.9", labels={"app": "db"}))
    ctl.reconcile(("default", "web"))
    assert endpoints(store)["metadata"]["resourceVersion"] == rv
    store.put(pod("b", ip="127.244.0.3"))
    ctl.reconcile(("default", "web"))
    assert endpoints(store)["metadata"]["resourceVersion"] != rv


def test_no_matching_pods_gives_empty_subsets(store, ctl):
    store.put(service())
    ctl.reconcile(("default", "web"))
    assert endpoints(store)["subsets"] == []


def test_service_deleted_or_selector_removed_deletes_its_endpoints(store, ctl):
    store.put(service())
    store.put(pod("a"))
    ctl.reconcile(("default", "web"))
    store.put(service(selector={}))  # selector removed in Git
    ctl.reconcile(("default", "web"))
    assert endpoints(store) is None
    store.put(service())
    ctl.reconcile(("default", "web"))
    assert endpoints(store) is not None
    store.delete("Service", "default", "web")
    ctl.reconcile(("default", "web"))
    assert endpoints(store) is None


def test_endpoints_not_made_by_the_controller_are_left_alone(store, ctl):
    store.put({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "external", "namespace": "default"},
               "subsets": [{"addresses": [{"ip": "127.0.0.9"}], "ports": [{"port": 5432}]}]})
    store.put(service("external", selector={}))
    ctl.reconcile(("default", "external"))
    store.delete("Service", "default", "external")
    ctl.reconcile(("default", "external"))
    assert endpoints(store, "external")["subsets"][0]["addresses"][0]["ip"] == "127.0.0.9"


def test_a_recreated_service_takes_over_its_endpoints(store, ctl):
    store.put(service())
    ctl.reconcile(("default", "web"))
    store.delete("Service", "default", "web")
    new = store.put(service())  # deleted and created again before the controller ran: new uid
    ctl.reconcile(("default", "web"))
    assert endpoints(store)["metadata"]["ownerReferences"][0]["uid"] == new["metadata"]["uid"]


def test_headless_service_without_ports(store, ctl):
    store.put(service("db", ports=[], cluster_ip="None"))
    store.put(pod("a", ip="127.244.0.2"))
    ctl.reconcile(("default", "db"))
    ep = endpoints(store, "db")
    assert ep["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    assert ep["subsets"] == [{"addresses": [ep["subsets"][0]["addresses"][0]]}]
    assert desired_subsets(service=service("plain", ports=[]), pods=[pod("a")]) == []  # not headless: no ports, no endpoints


def test_sorted_the_same_whatever_the_store_order():
    svc = service()
    pods = [pod(f"p{i}", ip=f"127.244.0.{i}", ready=i % 2 == 0) for i in range(2, 14)]
    assert desired_subsets(service=svc, pods=pods) == desired_subsets(service=svc, pods=list(reversed(pods)))


def test_services_selecting(store):
    store.put(service("web"))
    store.put(service("all-web", selector={"app": "web"}))
    store.put(service("db", selector={"app": "db"}))
    store.put(service("no-selector", selector={}))
    store.put(service("web", namespace="prod"))
    assert services_selecting(store=store, pod=pod("a")) == [("default", "all-web"), ("default", "web")]
    assert services_selecting(store=store, pod=pod("b", labels={"app": "cache"})) == []
