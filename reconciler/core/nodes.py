"""Facts about a Node that several parts need: is it Ready, its own address, how many pods fit.

The scheduler, the node lifecycle controller and the kubelet all read these; they are
independent packages, so the answers live here once.
"""
from __future__ import annotations

import ipaddress
from typing import Any

from reconciler.core import objects as o


def node_is_ready(node: dict[str, Any]) -> bool:
    """The Node's Ready condition is True."""
    cond = o.get_condition(node.get("status") or {}, "Ready")
    return bool(cond and cond.get("status") == "True")


def node_address(pod_cidr: str) -> str:
    """The node's own address in its pod CIDR: the first host address."""
    network = ipaddress.ip_network(pod_cidr, strict=False)
    return str(next(iter(network.hosts()), network.network_address))


def pod_ip_capacity(pod_cidr: str) -> int:
    """How many pods the CIDR can address: its host addresses minus the node's own."""
    network = ipaddress.ip_network(pod_cidr, strict=False)
    hosts = network.num_addresses - 2 if network.prefixlen < network.max_prefixlen - 1 else network.num_addresses
    return max(hosts - 1, 0)
