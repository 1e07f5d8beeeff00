"""The renderer as a pure function: the structure of the text, spreading, affinity, rejects, NodePorts.

No kernel here (test_kernel.py applies the same text for real); these read the lines a state
renders to, and check the model refuses what could not be rendered safely.
"""
from __future__ import annotations

import re

import pytest

from reconciler.proxy.nftables import (
    Endpoint,
    ProxyState,
    ServicePort,
    render_cleanup,
    render_full,
    render_update,
)
from reconciler.proxy.nftables.ruleset import (
    STANDING_COUNTS,
    _all_elements,
    add_elements,
    affinity_set,
    dnat_map,
    endpoint_chain,
    endpoints_chain,
    nodeport_dnat_map,
    nodeport_endpoints_chain,
    port_elements,
    service_chain,
)
from tests.unit.proxy.nftables.shapes import T, eps, lines, rules_of, sp


def test_full_replaces_the_table_whether_it_exists_or_not() -> None:
    text = lines(render_full(ProxyState()))
    assert text[:3] == [f"add table {T}", f"delete table {T}", text[2]]
    assert text[2].startswith(f"add table {T} {{ comment ")
    # Hooks: DNAT in prerouting and output, masquerade in postrouting, rejects before DNAT.
    hooks = {m.group(1): m.group(2) for line in text
             if (m := re.match(rf"add chain {T} (\S+) {{ type \w+ hook (\w+) ", line))}
    assert hooks == {"nat-prerouting": "prerouting", "nat-output": "output", "nat-postrouting": "postrouting",
                     "filter-input": "input", "filter-forward": "forward", "filter-output": "output"}
    assert rules_of("\n".join(text) + "\n", "masquerading")[-1] == "masquerade fully-random"
    assert "reject with tcp reset" in rules_of("\n".join(text) + "\n", "reject-chain")[0]


def test_rendering_is_deterministic_and_order_free() -> None:
    a = ProxyState(services={sp(): eps(3, 2, 4), sp("db", "10.96.0.11"): eps(5)})
    b = ProxyState(services={sp("db", "10.96.0.11"): eps(5), sp(): eps(4, 3, 2, 2)})
    assert a == b and render_full(a) == render_full(b)


def test_clusterip_spreads_evenly_over_ready_endpoints() -> None:
    web = sp()
    text = render_full(ProxyState(services={web: eps(2, 3, 4)}))
    # Every Service port with 3 endpoints shares one chain and one map: its address picks its
    # rows, numgen the row (uniform over 0..2).
    assert f"add element {T} service-ips {{ 10.96.0.10 . tcp . 80 : goto {endpoints_chain(3)} }}" in lines(text)
    assert f"add element {T} {dnat_map(3)} {{ " + ", ".join(
        f"10.96.0.10 . 80 . {i} : {ep.ip} . 8080" for i, ep in enumerate(eps(2, 3, 4))) + " }" in lines(text)
    # A map per protocol: the chain's rule matches the protocol, so the rows leave it out.
    assert rules_of(text, endpoints_chain(3)) == [
        f"meta l4proto {p} dnat ip to ip daddr . th dport . numgen random mod 3 map @{dnat_map(3, p.upper())}"
        for p in ("tcp", "udp")]
    assert dnat_map(3) == "dnat-tcp-3" and dnat_map(3, "UDP") == "dnat-udp-3"
    assert f"add chain {T} endpoint-" not in text  # no chain per endpoint without affinity
    assert service_chain(web) not in text  # nor per Service


def test_services_share_the_chains_of_their_endpoint_count() -> None:
    """What keeps a full ruleset of 1,000 Services cheap: chains and maps per endpoint count, not per Service."""
    services = {sp(f"s{i}", f"10.96.1.{i + 1}"): eps(*range(2, 2 + 1 + i % 3)) for i in range(30)}
    text = render_full(ProxyState(services=services))
    chains = [line for line in lines(text) if line.startswith(f"add chain {T} ")]
    # The standing counts 1..16, whether used or not (ports move between them by elements alone).
    assert sorted(c.split()[-1] for c in chains if re.search(r"endpoints-\d+$", c)) == sorted(
        [f"endpoints-{n}" for n in range(1, STANDING_COUNTS + 1)]
        + [f"nodeport-endpoints-{n}" for n in range(1, STANDING_COUNTS + 1)])
    assert not [c for c in chains if "service-default/" in c]
    # A port with more endpoints than that brings its count along.
    many = render_full(ProxyState(services={sp(): eps(*range(2, 2 + STANDING_COUNTS + 1))}))
    assert f"add chain {T} {endpoints_chain(STANDING_COUNTS + 1)}" in lines(many)


def test_hairpin_masquerades_a_pod_reaching_itself() -> None:
    text = render_full(ProxyState(services={sp(): eps(3, 2), sp("db", "10.96.0.11"): eps(2)}))
    # The set learns "source . source" from each DNATed connection's first packet, so its
    # lookup of "source . destination" matches exactly when the two are one address.
    assert f"add set {T} hairpin {{ typeof ip saddr . ip daddr; size 65535; flags dynamic,timeout; " \
           "timeout 1s; }" in lines(text)
    assert rules_of(text, "masquerading")[:2] == ["ct status dnat update @hairpin { ip saddr . ip saddr }",
                                                  "ct status dnat ip saddr . ip daddr @hairpin masquerade"]
    # Nothing per endpoint: neither the full write nor an update carries hairpin elements.
    assert "element ip reconciler hairpin" not in text
    update = render_update(ProxyState(services={sp(): eps(3, 2), sp("db", "10.96.0.11"): eps(2)}),
                           ProxyState(services={sp(): eps(3), sp("db", "10.96.0.11"): eps(2, 4)}))
    assert update is not None and "hairpin" not in update


def test_one_endpoint_goes_through_the_count_of_one() -> None:
    text = render_full(ProxyState(services={sp(): eps(2)}))
    assert f"add element {T} {dnat_map(1)} {{ 10.96.0.10 . 80 . 0 : 10.244.0.2 . 8080 }}" in lines(text)


def test_client_ip_affinity_uses_a_timed_set_per_endpoint() -> None:
    web = sp(session_affinity="ClientIP", affinity_timeout=600)
    text = render_full(ProxyState(services={web: eps(2, 3)}))
    for ep in eps(2, 3):
        name = affinity_set(web, ep)
        assert f"add set {T} {name} {{ type ipv4_addr; flags dynamic,timeout; timeout 600s; }}" in lines(text)
        assert rules_of(text, endpoint_chain(web, ep)) == [
            f"update @{name} {{ ip saddr }}", f"meta l4proto tcp dnat ip to {ep.ip}:8080"]
    service = rules_of(text, service_chain(web))
    # Known clients first, then a fresh pick.
    assert service[:2] == [f"ip saddr @{affinity_set(web, ep)} goto {endpoint_chain(web, ep)}" for ep in eps(2, 3)]
    assert service[2] == ("numgen random mod 2 vmap { "
                          + ", ".join(f"{i} : goto {endpoint_chain(web, ep)}" for i, ep in enumerate(eps(2, 3))) + " }")
    assert ServicePort(namespace="a", name="b", cluster_ip="10.96.0.1", port=1).affinity_timeout == 10800


def test_no_ready_endpoint_rejects_instead_of_dnat() -> None:
    web = sp(node_port=30080)
    text = render_full(ProxyState(services={web: []}))
    assert f"add element {T} no-endpoint-services {{ 10.96.0.10 . tcp . 80 : goto reject-chain }}" in lines(text)
    assert f"add element {T} no-endpoint-nodeports {{ tcp . 30080 : goto reject-chain }}" in lines(text)
    assert service_chain(web) not in text and "service-ips {" not in text.split("add element")[-1]


def test_nodeport_on_every_node_address_including_loopback() -> None:
    web = sp(node_port=30080)
    text = render_full(ProxyState(services={web: eps(2)}, node_ips=("198.18.0.1", "10.244.0.1")))
    assert f"add element {T} nodeport-ips {{ 10.244.0.1, 127.0.0.1, 198.18.0.1 }}" in lines(text)
    assert f"add element {T} service-nodeports {{ tcp . 30080 : goto {nodeport_endpoints_chain(1)} }}" in lines(text)
    assert f"add element {T} {nodeport_dnat_map(1)} {{ 30080 . 0 : 10.244.0.2 . 8080 }}" in lines(text)
    # NodePort connections are marked for masquerade, then DNATed like the ClusterIP.
    assert rules_of(text, "services")[1:] == [
        "ip daddr @nodeport-ips meta l4proto . th dport @service-nodeports meta mark set meta mark | 0x4000",
        "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"]


def test_cluster_cidr_masquerades_traffic_from_outside_it() -> None:
    text = render_full(ProxyState(services={sp(): eps(2)}, cluster_cidr="10.244.0.0/16"))
    # One rule for every ClusterIP (the map doubles as the set of its keys), before the DNAT.
    assert rules_of(text, "services")[:2] == [
        "ip saddr != 10.244.0.0/16 ip daddr . meta l4proto . th dport @service-ips meta mark set meta mark | 0x4000",
        "ip daddr . meta l4proto . th dport vmap @service-ips"]


def test_names_are_declared_before_use() -> None:
    text = render_full(ProxyState(services={sp(node_port=30080, session_affinity="ClientIP"): eps(2, 3),
                                            sp("db", "10.96.0.11"): eps(4)}))
    declared: set[str] = set()
    for line in lines(text):
        if m := re.match(rf"add (?:chain|set|map) {T} (\S+)", line):
            declared.add(m.group(1))
        for used in re.findall(r"(?:goto|jump) ([^\s,}]+)|@([^\s,}]+)", line):
            name = used[0] or used[1]
            assert name in declared, (name, line)


def test_cleanup_is_idempotent_text() -> None:
    assert render_cleanup() == f"add table {T}\ndelete table {T}\n"


@pytest.mark.parametrize("fields, message", [
    ({"cluster_ip": "10.96.0.300"}, "clusterIP"),
    ({"cluster_ip": "fd00::1"}, "clusterIP"),
    ({"name": "Web; flush ruleset"}, "Service name"),
    ({"port_name": "http }"}, "port name"),
    ({"port": 0}, "port"),
    ({"node_port": 70000}, "nodePort"),
    ({"protocol": "SCTP"}, "protocol"),
    ({"session_affinity": "Cookie"}, "sessionAffinity"),
    ({"affinity_timeout": 0}, "timeout"),
])
def test_the_model_refuses_what_could_not_be_rendered_safely(fields: dict, message: str) -> None:
    base = {"namespace": "default", "name": "web", "cluster_ip": "10.96.0.10", "port": 80} | fields
    with pytest.raises(ValueError, match=message):
        ServicePort(**base)


def test_the_state_refuses_clashing_services_and_bad_frames() -> None:
    with pytest.raises(ValueError, match="clusterIP"):
        ProxyState(services={sp(): [], sp("db"): []})
    with pytest.raises(ValueError, match="nodePort"):
        ProxyState(services={sp(node_port=30080): [], sp("db", "10.96.0.11", node_port=30080): []})
    with pytest.raises(ValueError, match="endpoint IP"):
        Endpoint("10.244.0.x", 80)
    with pytest.raises(ValueError, match="mark"):
        ProxyState(masquerade_mark=0x6000)
    with pytest.raises(ValueError, match="node address"):
        ProxyState(node_ips=("localhost",))
    assert ProxyState().node_ips == ("127.0.0.1",)


def test_another_table_name_renames_every_line_and_only_the_table() -> None:
    state = ProxyState(services={sp(node_port=30080, session_affinity="ClientIP"): eps(2, 3)}, node_ips=("10.244.0.1",))
    default, named = render_full(state), render_full(state, table="rctest-7")
    assert named == default.replace(f" {T} ", " ip rctest-7 ").replace(f" {T}\n", " ip rctest-7\n")
    assert all(" ip rctest-7" in line and T not in line for line in lines(named))
    fewer = ProxyState(services={sp(node_port=30080, session_affinity="ClientIP"): eps(2)},
                       node_ips=("10.244.0.1",))
    update = render_update(state, fewer, table="rctest-7")
    assert update and all(" ip rctest-7 " in line for line in lines(update))
    assert render_cleanup(table="rctest-7") == "add table ip rctest-7\ndelete table ip rctest-7\n"
    with pytest.raises(ValueError, match="nftables table name"):
        render_cleanup(table="x; flush ruleset")


def test_loopback_is_not_reachable_from_other_hosts_despite_route_localnet() -> None:
    # route_localnet=1 is set for NodePorts on 127.0.0.1; without this rule another host could
    # reach the host's loopback-only services (CVE-2020-8558).
    assert 'iifname != "lo" ip daddr 127.0.0.0/8 ct status & dnat == 0 drop' in rules_of(
        render_full(ProxyState()), "filter-input")


def test_the_full_render_writes_exactly_the_elements_the_partial_update_diffs() -> None:
    """``_all_elements`` (the full render's fast loop) and ``port_elements`` (what partial updates
    compare) must describe one table, or an update would delete what is not there."""
    services = {sp(f"s{i}", f"10.96.1.{i + 1}", node_port=30000 + i if i % 2 else None,
                   protocol="UDP" if i % 5 == 0 else "TCP",
                   session_affinity="ClientIP" if i % 7 == 3 else "None"): eps(*range(2, 2 + i % 4))
                for i in range(40)}
    ordered = sorted(ProxyState(services=services).services.items(), key=lambda item: item[0].key)
    assert _all_elements(ordered) == add_elements(e for s, ep in ordered for e in port_elements(s, ep))
    assert any(" : goto reject-chain" in line for line in _all_elements(ordered))
    assert any("dnat-udp-" in line for line in _all_elements(ordered))
