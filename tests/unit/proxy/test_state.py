"""``build_state``: what the data plane is rendered from, read from Services and Endpoints (pure)."""
from __future__ import annotations

from reconciler.proxy.nftables import Endpoint
from reconciler.proxy.state import build_state, cluster_ip


def service(name: str, *, ip: str | None = "10.96.0.10", type_: str = "ClusterIP", ports: list | None = None,
            namespace: str = "default", created: str = "2026-01-01T00:00:00Z", **spec: object) -> dict:
    body: dict = {"type": type_, "ports": ports or [{"name": "http", "port": 80, "targetPort": 8080}], **spec}
    if ip is not None:
        body["clusterIP"] = ip
    return {"kind": "Service", "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
            "spec": body}


def endpoints(name: str, ready: list[str], *, not_ready: list[str] = (), port: int = 8080,  # type: ignore[assignment]
              port_name: str = "http", namespace: str = "default") -> dict:
    return {"kind": "Endpoints", "metadata": {"name": name, "namespace": namespace},
            "subsets": [{"addresses": [{"ip": ip} for ip in ready],
                         "notReadyAddresses": [{"ip": ip} for ip in not_ready],
                         "ports": [{"name": port_name, "port": port, "protocol": "TCP"}]}]}


def test_ready_addresses_become_endpoints_on_the_target_port() -> None:
    state, problems = build_state(services=[service("web")],
                                  endpoints=[endpoints("web", ["10.244.0.2", "10.244.0.3"], not_ready=["10.244.0.4"])],
                                  node_ips=["10.244.0.1"])
    assert problems == []
    [(sp, eps)] = state.services.items()
    assert (sp.namespace, sp.name, sp.cluster_ip, sp.port, sp.port_name, sp.node_port) == \
        ("default", "web", "10.96.0.10", 80, "http", None)
    assert list(eps) == [Endpoint("10.244.0.2", 8080), Endpoint("10.244.0.3", 8080)]
    assert state.node_ips == ("10.244.0.1", "127.0.0.1")


def test_node_port_affinity_and_port_matching_by_name() -> None:
    svc = service("web", type_="NodePort", sessionAffinity="ClientIP",
                  sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}},
                  ports=[{"name": "http", "port": 80, "nodePort": 30080}, {"name": "admin", "port": 81}])
    state, _ = build_state(services=[svc], endpoints=[endpoints("web", ["10.244.0.2"], port_name="admin", port=9000)],
                           node_ips=[])
    by_name = {sp.port_name: (sp, list(eps)) for sp, eps in state.services.items()}
    assert by_name["http"][0].node_port == 30080 and by_name["http"][1] == []  # no ready endpoint: rejected
    assert by_name["admin"][1] == [Endpoint("10.244.0.2", 9000)]
    assert by_name["http"][0].client_ip_affinity and by_name["http"][0].affinity_timeout == 60


def test_headless_refused_and_unaddressed_services_get_no_rules() -> None:
    refused = service("refused", ip="10.96.0.11")
    refused["spec"]["clusterIPs"] = []  # the service controller refused the declared address
    state, problems = build_state(services=[service("headless", ip="None"), service("pending", ip=None), refused,
                                            service("external", type_="ExternalName")],
                                  endpoints=[], node_ips=[])
    assert dict(state.services) == {} and problems == []
    assert cluster_ip(refused) is None and cluster_ip(service("web")) == "10.96.0.10"


def test_a_clash_leaves_the_younger_service_out_and_says_so() -> None:
    old = service("old", created="2026-01-01T00:00:00Z")
    young = service("young", created="2026-02-01T00:00:00Z")
    state, problems = build_state(services=[young, old], endpoints=[], node_ips=[])
    assert [sp.name for sp in state.services] == ["old"]
    assert problems == ["Service default/young is left out of the data plane: 10.96.0.10:80/TCP belongs to "
                        "Service default/old"]


def test_a_service_the_model_refuses_is_named_and_the_others_stay() -> None:
    bad = service("web", ip="10.96.0.12", ports=[{"name": "Bad_Name", "port": 80}])
    state, problems = build_state(services=[bad, service("ok")], endpoints=[], node_ips=["not-an-ip"])
    assert [sp.name for sp in state.services] == ["ok"]
    assert len(problems) == 1 and "Service default/web is left out" in problems[0] and "Bad_Name" in problems[0]
