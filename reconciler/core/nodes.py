"""Facts about a Node that several parts need: is it Ready, its own address, how many pods fit.

The scheduler, the node lifecycle controller and the kubelet all read these; they are
independent packages, so the answers live here once.
"""
from __future__ import annotations

import ipaddress
from typing import Any

from reconciler.core import objects as o

DEFAULT_POD_CIDR_POOL = "10.244.0.0/16"  # config podCIDRPool: a /24 of it per node


def node_is_ready(node: dict[str, Any]) -> bool:
    """The Node's Ready condition is True."""
    cond = o.get_condition(node.get("status") or {}, "Ready")
    return bool(cond and cond.get("status") == "True")


def internal_ip(node: dict[str, Any] | None) -> str | None:
    """The Node's InternalIP (the address other hosts reach it at), as its agent reported it."""
    for address in ((node or {}).get("status") or {}).get("addresses") or []:
        if address.get("type") == "InternalIP" and address.get("address"):
            return str(address["address"])
    return None


def host_ip(store: Any, pod: dict[str, Any]) -> str | None:
    """A pod's ``status.hostIP``: the InternalIP of the node it runs on (None before it has one)."""
    node_name = (pod.get("spec") or {}).get("nodeName")
    return internal_ip(store.get("Node", "", node_name)) if node_name else None


def node_address(pod_cidr: str) -> str:
    """The node's own address in its pod CIDR: the first host address."""
    network = ipaddress.ip_network(pod_cidr, strict=False)
    return str(next(iter(network.hosts()), network.network_address))


def pod_ip_capacity(pod_cidr: str) -> int:
    """How many pods the CIDR can address: its host addresses minus the node's own."""
    network = ipaddress.ip_network(pod_cidr, strict=False)
    hosts = network.num_addresses - 2 if network.prefixlen < network.max_prefixlen - 1 else network.num_addresses
    return max(hosts - 1, 0)
