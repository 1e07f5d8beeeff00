"""The node's pod network: one podman bridge network whose subnet is the node's pod CIDR.

Why podman's own network (netavark) and not a CNI of ours: podman already makes the
bridge, the veth per pod and the address assignment, and gives a pod the static address
the scheduler chose (``static_ips``); the pod IP is then the pod's real address on the
bridge, reachable from the host and every pod without publishing a port. The first
address of the CIDR is the bridge's own (the gateway, and the Node's InternalIP), which
is why the scheduler hands out addresses after it.

``ensure_network`` is idempotent: it inspects the network by name and creates it when
missing (the bridge interface named like the network, so two nodes' networks on one
machine never share a bridge). A network of that name with another subnet is somebody
else's (or an older configuration): that is one clear error, never a silent second
address range, because the scheduler's addresses would not be the pods' addresses.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from runtime.driver import DriverError, PodNetwork
from runtime.podman.transport import Call, error_message

# A Linux interface name is at most 15 bytes; podman's network names are wider, but ours
# names the bridge too.
_BRIDGE_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]{0,14}$")


def check_network(network: PodNetwork) -> None:
    """Refuse a network podman could not make as we need it; one sentence each."""
    if not _BRIDGE_NAME.match(network.name):
        raise DriverError(f"pod network name {network.name!r} must be 1-15 letters, digits, '_', '.' or '-' "
                          "(it also names the bridge interface).")
    try:
        subnet = ipaddress.IPv4Network(network.subnet)
    except ValueError:
        raise DriverError(f"pod CIDR {network.subnet!r} is not an IPv4 network.") from None
    if subnet.prefixlen > 29:
        raise DriverError(f"pod CIDR {network.subnet} is too small for a pod network (at most /29).")


def gateway(subnet: str) -> str:
    """The bridge's address: the first host address of the subnet."""
    return str(next(iter(ipaddress.IPv4Network(subnet).hosts())))


def network_body(network: PodNetwork) -> dict[str, Any]:
    """The body of libpod's ``POST /networks/create`` for the node's pod network."""
    return {
        "name": network.name,
        "driver": "bridge",
        "network_interface": network.name,
        "subnets": [{"subnet": network.subnet, "gateway": gateway(network.subnet)}],
        "ipv6_enabled": False,
        "internal": False,
        # Names resolve through /etc/hosts (the Services) in this project, not podman's DNS.
        "dns_enabled": False,
    }


def _subnets(inspected: dict[str, Any]) -> list[str]:
    return [str(s.get("subnet")) for s in inspected.get("subnets") or [] if s.get("subnet")]


def ensure_network(call: Call, network: PodNetwork) -> str:
    """Make sure podman has ``network``; returns its bridge interface name.

    DriverError when podman has a network of that name with another subnet, or refuses.
    """
    check_network(network)
    for _attempt in range(3):
        response = call("get", f"/networks/{network.name}/json")
        if response.status_code == 200:
            inspected = response.json() or {}
            subnets = _subnets(inspected)
            wanted = str(ipaddress.IPv4Network(network.subnet))
            if wanted not in subnets:
                have = ", ".join(subnets) or "no subnet"
                raise DriverError(f"podman network {network.name} exists with {have}, but this node's pod CIDR is "
                                  f"{wanted}: remove the network (podman network rm {network.name}) or set the "
                                  "node's podCIDR to its subnet.")
            return str(inspected.get("network_interface") or network.name)
        if response.status_code != 404:
            raise DriverError(f"podman could not inspect network {network.name}: {error_message(response)}")
        created = call("post", "/networks/create", body=network_body(network))
        if created.status_code in (200, 201):
            return str((created.json() or {}).get("network_interface") or network.name)
        if created.status_code != 409:  # 409: made meanwhile by a concurrent call; inspect it again
            raise DriverError(f"podman could not create the pod network {network.name} ({network.subnet}): "
                              f"{error_message(created)}")
    raise DriverError(f"podman network {network.name} kept changing while it was being made.")
