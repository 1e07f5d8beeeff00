"""Routes to other nodes' pod CIDRs (host-gw): pure selection, and the real kernel in a namespace."""
from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from reconciler.kubelet.routes import PodRoutes, Route, wanted_routes


def node(name: str, cidr: str | None, ip: str | None) -> dict:
    status = {"addresses": [{"type": "InternalIP", "address": ip}]} if ip else {}
    return {"metadata": {"name": name}, "spec": {"podCIDR": cidr} if cidr else {}, "status": status}


def test_wanted_routes_are_every_other_routable_node() -> None:
    nodes = [node("a", "10.244.0.0/24", "198.18.0.10"), node("b", "10.244.1.0/24", "198.18.0.11"),
             node("c", None, "198.18.0.12"), node("d", "10.244.3.0/24", None), node("e", "bogus", "198.18.0.14")]
    assert wanted_routes(nodes, me="a") == [Route(cidr="10.244.1.0/24", via="198.18.0.11")]
    assert wanted_routes(nodes, me="b") == [Route(cidr="10.244.0.0/24", via="198.18.0.10")]


@pytest.fixture
def netns() -> Iterator[str]:
    if shutil.which("ip") is None or shutil.which("nsenter") is None:
        pytest.skip("needs iproute2 and nsenter")
    name = f"rcrt-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        def sh(*args: str) -> None:
            subprocess.run(["nsenter", f"--net=/run/netns/{name}", *args], check=True, capture_output=True)
        sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")  # a link to route over
        sh("ip", "addr", "add", "198.18.0.10/24", "dev", "eth0")
        sh("ip", "link", "set", "eth1", "up")
        sh("ip", "link", "set", "eth0", "up")
        # Somebody else's route in the same range: never ours to touch.
        sh("ip", "route", "add", "10.244.9.0/24", "via", "198.18.0.19")
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def test_sync_adds_replaces_and_removes_only_our_routes(netns: str) -> None:
    routes = PodRoutes(netns=netns)
    assert routes.current() == []
    b = Route(cidr="10.244.1.0/24", via="198.18.0.11")
    c = Route(cidr="10.244.2.0/24", via="198.18.0.12")
    assert routes.sync([b, c]) == {"added": [b, c], "removed": []}
    assert routes.current() == [b, c]
    moved = Route(cidr="10.244.2.0/24", via="198.18.0.22")  # node c came back on another address
    changed = routes.sync([moved])
    assert changed["added"] == [moved] and changed["removed"] == [b]
    assert routes.current() == [moved]
    routes.clear()
    assert routes.current() == []
    theirs = subprocess.run(["nsenter", f"--net=/run/netns/{netns}", "ip", "route", "show", "10.244.9.0/24"],
                            capture_output=True, text=True, check=True).stdout
    assert "via 198.18.0.19" in theirs
