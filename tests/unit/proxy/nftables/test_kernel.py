"""The nftables data plane in a real kernel: connections through ClusterIPs and NodePorts.

Each test gets its own namespaces (``netlab.Lab``: a node with a bridge and three pods
serving on :8080, and a client host), applies the ruleset in the node's namespace with
``NftTable(netns=…)`` and connects from the node itself, from pods and from the client. The
servers answer with their own address and the peer address they saw, so a test can tell
which endpoint it reached and whether the source was masqueraded.
"""
from __future__ import annotations

import collections
import json
import subprocess
import time
from collections.abc import Iterator

import pytest

from reconciler.proxy.nftables import Endpoint, NftMissing, NftTable, ProxyState, ServicePort, require_nft
from tests.unit.proxy.nftables.netlab import NODE_IP, SERVER_PORT, SUBNET, Lab, sh, usable

pytestmark = pytest.mark.skipif(bool(usable()), reason=usable() or "usable")

CLUSTER_IP = "10.96.0.10"
NODE_PORT = 30080


@pytest.fixture()
def lab() -> Iterator[Lab]:
    lab = Lab()
    try:
        yield lab.start()
    finally:
        lab.close()
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
        assert lab.tag not in left, "a test namespace was left behind"


@pytest.fixture()
def table(lab: Lab) -> NftTable:
    table = NftTable(netns=lab.node)
    table.ensure_sysctls()
    return table


def web(**fields) -> ServicePort:  # type: ignore[no-untyped-def]
    return ServicePort(namespace="default", name="web", cluster_ip=CLUSTER_IP, port=80, port_name="http",
                       node_port=NODE_PORT, **fields)


def state(lab: Lab, pods: list[int], sp: ServicePort | None = None) -> ProxyState:
    eps = [Endpoint(lab.pod_ip(i), SERVER_PORT) for i in pods]
    return ProxyState(services={sp or web(): eps}, node_ips=(NODE_IP, f"{SUBNET}.1"))


def served_by(results: list[dict]) -> collections.Counter[str]:
    assert all("reply" in r for r in results), [r for r in results if "reply" not in r][:3]
    return collections.Counter(r["reply"].split()[0] for r in results)


def test_clusterip_from_the_host_spreads_over_every_endpoint(lab: Lab, table: NftTable) -> None:
    assert table.sync(state(lab, [0, 1, 2])) == "full"
    counts = served_by(lab.connect(lab.node, CLUSTER_IP, 80, count=90))
    assert set(counts) == {lab.pod_ip(i) for i in range(3)}
    # 30 expected each; below 10 would be a broken spread (chance ~1e-6 with a fair one).
    assert min(counts.values()) >= 10, counts


def test_clusterip_from_a_pod_and_hairpin(lab: Lab, table: NftTable) -> None:
    table.sync(state(lab, [0, 1, 2]))
    results = lab.connect(lab.pod_ns(0), CLUSTER_IP, 80, count=60)
    counts = served_by(results)
    assert set(counts) == {lab.pod_ip(i) for i in range(3)}
    # Pod 0 reached itself through its Service: it saw the node's bridge address as the peer
    # (masqueraded), or its reply would have gone to itself un-NATed and the connection hung.
    hairpin = [r["reply"].split() for r in results if r["reply"].startswith(lab.pod_ip(0) + " ")]
    assert hairpin and all(peer == f"{SUBNET}.1" for _, peer in hairpin)
    # Pod-to-pod through the Service keeps the pod's own source address.
    others = [r["reply"].split() for r in results if not r["reply"].startswith(lab.pod_ip(0) + " ")]
    assert all(peer == lab.pod_ip(0) for _, peer in others)


def test_hairpin_needs_the_bridge_port_in_hairpin_mode() -> None:
    lab = Lab(pods=2, hairpin=False)
    try:
        lab.start()
        table = NftTable(netns=lab.node)
        table.ensure_sysctls()
        table.sync(state(lab, [0]))  # pod 0 is the only endpoint: every connection is a hairpin
        [result] = lab.connect(lab.pod_ns(0), CLUSTER_IP, 80, timeout=0.5)
        assert "error" in result, result  # bridged back out of its own port: dropped
        assert table.settle_bridge("br0") == ["br0", "vp0", "vp1"]
        assert table.settle_bridge("br0") == []  # pinned and already on
        assert served_by(lab.connect(lab.pod_ns(0), CLUSTER_IP, 80, count=3)) == {lab.pod_ip(0): 3}
    finally:
        lab.close()


def _bridge_mac(lab: Lab) -> str:
    return json.loads(sh("ip", "-n", lab.node, "-j", "link", "show", "br0"))[0]["address"]


def _attach_low_mac_port(lab: Lab, name: str) -> None:
    """A new port whose MAC is below every other: an unpinned bridge takes it as its own."""
    sh("ip", "-n", lab.node, "link", "add", name, "address", "02:00:00:00:00:01", "type", "veth",
       "peer", "name", name + "p")
    sh("ip", "-n", lab.node, "link", "set", name, "master", "br0", "up")


def test_the_bridge_mac_does_not_move_when_pods_come_and_go() -> None:
    """Pods' ARP entries for their gateway must stay right through a rollout (settle_bridge)."""
    lab = Lab(pods=2)
    try:
        lab.start()
        before = _bridge_mac(lab)
        _attach_low_mac_port(lab, "vlow0")
        assert _bridge_mac(lab) != before  # the kernel's default: the lowest port MAC wins
        sh("ip", "-n", lab.node, "link", "del", "vlow0")
        table = NftTable(netns=lab.node)
        table.settle_bridge("br0")
        pinned = _bridge_mac(lab)
        _attach_low_mac_port(lab, "vlow1")
        sh("ip", "-n", lab.node, "link", "del", "vlow1")
        assert _bridge_mac(lab) == pinned
    finally:
        lab.close()


def test_client_ip_affinity_sticks(lab: Lab, table: NftTable) -> None:
    table.sync(state(lab, [0, 1, 2], web(session_affinity="ClientIP", affinity_timeout=60)))
    for ns in (lab.node, lab.pod_ns(1), lab.ns("client")):
        counts = served_by(lab.connect(ns, CLUSTER_IP, 80, count=20))
        assert len(counts) == 1, (ns, counts)
    # An endpoint change elsewhere in the Service keeps the sticky clients where they were.
    first = served_by(lab.connect(lab.node, CLUSTER_IP, 80, count=1))
    stuck = next(iter(first))
    keep = [i for i in range(3) if lab.pod_ip(i) == stuck]
    other = next(i for i in range(3) if i not in keep)
    assert table.sync(state(lab, keep + [other], web(session_affinity="ClientIP", affinity_timeout=60))) in (
        "partial", "unchanged")
    assert set(served_by(lab.connect(lab.node, CLUSTER_IP, 80, count=10))) == {stuck}


def test_no_ready_endpoint_is_refused_at_once(lab: Lab, table: NftTable) -> None:
    table.sync(state(lab, []))
    for ns, ip, port in ((lab.node, CLUSTER_IP, 80), (lab.pod_ns(0), CLUSTER_IP, 80),
                         (lab.node, "127.0.0.1", NODE_PORT), (lab.ns("client"), NODE_IP, NODE_PORT),
                         (lab.ns("client"), CLUSTER_IP, 80)):
        [result] = lab.connect(ns, ip, port, timeout=5.0)
        assert result.get("error") == "ECONNREFUSED", (ns, ip, port, result)
        assert result["seconds"] < 1.0, (ns, ip, port, result)


def test_nodeport_answers_on_every_node_address_including_loopback(lab: Lab, table: NftTable) -> None:
    table.sync(state(lab, [0, 1, 2]))
    for ns, ip in ((lab.node, "127.0.0.1"), (lab.node, NODE_IP), (lab.ns("client"), NODE_IP),
                   (lab.pod_ns(1), f"{SUBNET}.1")):
        results = lab.connect(ns, ip, NODE_PORT, count=12)
        assert set(served_by(results)) <= {lab.pod_ip(i) for i in range(3)}, (ns, ip)
        # NodePort traffic is masqueraded: the pod sees a node address, never 127.0.0.1 or the client.
        peers = {r["reply"].split()[1] for r in results}
        assert peers <= {f"{SUBNET}.1"}, (ns, ip, peers)
    # The ClusterIP from another host works too (routed to this node).
    assert served_by(lab.connect(lab.ns("client"), CLUSTER_IP, 80, count=3))


def test_updates_replace_rules_without_dropping_a_connection(lab: Lab, table: NftTable) -> None:
    table.sync(state(lab, [0, 1]))
    flow = lab.connect_until_stopped(lab.node, CLUSTER_IP, 80)
    kinds = []
    started = time.monotonic()
    try:
        # Updates take a few ms: go on (bounded: 2,000 updates) until the flow has had three
        # seconds to connect through them (a loaded machine is slow to start the client), so
        # many connections meet a change in flight.
        for n in range(1, 2001):
            pods = [[0, 1], [1, 2], [0, 2], [0, 1, 2]][n % 4]
            kinds.append(table.sync(state(lab, pods)))
            if n == 10:
                table.replace(state(lab, pods))  # a full rebuild in the middle of the flow, too
            if n >= 20 and time.monotonic() - started > 3.0:
                break
    finally:
        results = flow.stop()
    assert set(kinds) == {"partial"}, kinds
    failures = [r for r in results if "reply" not in r]
    assert not failures and len(results) > 20, (len(results), failures[:3])
    # After the last update only its endpoints answer.
    table.sync(state(lab, [2]))
    assert set(served_by(lab.connect(lab.node, CLUSTER_IP, 80, count=10))) == {lab.pod_ip(2)}


def test_partial_update_falls_back_to_full_when_the_table_was_removed(lab: Lab, table: NftTable) -> None:
    table.sync(state(lab, [0]))
    table.run("delete", "table", "ip", "reconciler")  # someone cleaned up by hand
    assert table.sync(state(lab, [1])) == "full"
    assert set(served_by(lab.connect(lab.node, CLUSTER_IP, 80, count=3))) == {lab.pod_ip(1)}


def test_services_come_and_go_through_partial_updates(lab: Lab, table: NftTable) -> None:
    db = ServicePort(namespace="default", name="db", cluster_ip="10.96.0.11", port=5432)
    eps0 = [Endpoint(lab.pod_ip(0), SERVER_PORT)]
    both = ProxyState(services={web(): eps0, db: [Endpoint(lab.pod_ip(1), SERVER_PORT)]}, node_ips=(NODE_IP,))
    table.stale_row_grace = 0.0  # rows left behind go at once: the listing below compares the end state
    table.sync(ProxyState(services={web(): eps0}, node_ips=(NODE_IP,)))
    assert table.sync(both) == "partial"
    assert set(served_by(lab.connect(lab.node, "10.96.0.11", 5432, count=3))) == {lab.pod_ip(1)}
    assert table.sync(ProxyState(services={db: []}, node_ips=(NODE_IP,))) == "partial"
    [result] = lab.connect(lab.node, "10.96.0.11", 5432)
    assert result.get("error") == "ECONNREFUSED", result  # db: no endpoint left
    [result] = lab.connect(lab.node, CLUSTER_IP, 80, timeout=1.0)
    assert "error" in result, result  # web: gone, nothing answers on its address any more
    # What the partial updates built is what a full rebuild builds.
    # (The hairpin set's elements are learned from packets and expire: not part of the state.)
    def written(listing: str) -> list[str]:
        return sorted(line for line in listing.splitlines() if " expires " not in line)

    partial = table.listing()
    table.replace(ProxyState(services={db: []}, node_ips=(NODE_IP,)))
    assert written(partial) == written(table.listing())


def test_rows_a_port_moved_away_from_stay_for_a_grace_then_go(lab: Lab, table: NftTable) -> None:
    """A packet that met the old verdict may still look its row up (update.render_update_pair)."""
    table.stale_row_grace = 0.5
    table.sync(state(lab, [0, 1]))
    assert table.sync(state(lab, [0, 1, 2])) == "partial"  # endpoints-2 -> endpoints-3
    left = table.stale_rows()
    assert left and all(name.endswith("-2") for name, _key in left)
    assert f"{CLUSTER_IP} . 80 . 1 : {lab.pod_ip(1)} . {SERVER_PORT}" in table.listing()  # still there
    assert table.sync(state(lab, [0, 1])) == "partial"  # and back: the rows are wanted again, replaced
    assert not table.stale_rows() - {row for row in table.stale_rows() if row[0].endswith("-3")}
    started = time.monotonic()
    while table.stale_rows() and time.monotonic() - started < 10:
        table.remove_stale_rows()
        time.sleep(0.05)  # polling a deadline-bounded condition
    assert not table.stale_rows()
    assert f". 2 : {lab.pod_ip(2)}" not in table.listing()  # the count-3 rows went
    assert set(served_by(lab.connect(lab.node, CLUSTER_IP, 80, count=20))) == {lab.pod_ip(0), lab.pod_ip(1)}


def test_cleanup_removes_the_table(lab: Lab, table: NftTable) -> None:
    table.sync(state(lab, [0, 1, 2]))
    assert table.exists()
    table.cleanup()
    assert not table.exists()
    table.cleanup()  # twice is fine
    assert table.applied is None


def test_sysctls_are_set_in_the_namespace(lab: Lab, table: NftTable) -> None:
    out = subprocess.run(["nsenter", f"--net=/run/netns/{lab.node}", "cat", "/proc/sys/net/ipv4/ip_forward",
                          "/proc/sys/net/ipv4/conf/all/route_localnet"], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]


def test_missing_nft_is_a_one_sentence_error_naming_the_package() -> None:
    with pytest.raises(NftMissing, match=r"Debian package `nftables`"):
        require_nft("nft-not-installed-here")
    with pytest.raises(NftMissing):
        NftTable(nft="nft-not-installed-here")



def test_connections_of_a_gone_pod_are_forgotten(lab: Lab, table: NftTable) -> None:
    """An entry still holding a dead pod's DNAT would catch a new connection from the same port."""
    table.sync(state(lab, [0]))
    assert served_by(lab.connect(lab.node, CLUSTER_IP, 80, count=3)) == {lab.pod_ip(0): 3}

    def entries(ip: str) -> list[str]:
        out = subprocess.run(["nsenter", f"--net=/run/netns/{lab.node}", "conntrack", "-L", "-r", ip],
                             capture_output=True, text=True, check=False).stdout
        return [line for line in out.splitlines() if line.strip()]

    assert entries(lab.pod_ip(0))  # the three connections, closed, still tracked (TIME_WAIT)
    assert table.forget_connections(lab.pod_ip(0)) == 3
    assert not entries(lab.pod_ip(0))
    assert table.forget_connections(lab.pod_ip(0)) == 0  # nothing left: fine
