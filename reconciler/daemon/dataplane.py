"""The daemon's host as a data-plane host: kernel settings, pod networks, routes, and their clean-up.

What the daemon leaves in the kernel on purpose (the Services' nftables table, the pod
CIDRs' fallback routes, the routes to other nodes' pods) outlives it, so Services keep
answering while it is stopped or upgraded; `reconciler daemon --cleanup` removes it,
as ``kube-proxy --cleanup`` does.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

import structlog

from reconciler.core.nodes import node_address
from reconciler.daemon.config import Config, NodeConfig
from reconciler.kubelet.nodestatus import NodeBinding
from reconciler.kubelet.routes import PodRoutes, RouteError
from reconciler.proxy.nftables import NftError, NftMissing, NftTable
from runtime.driver import DriverError, NodeDriver, NodeUnreachable

log = structlog.get_logger("daemon")

DEFAULT_POD_CIDR = "10.244.0.0/24"  # the local node's, when the config names no nodes


def prepare_data_plane(*, nft: NftTable, nodes: Sequence[NodeBinding], service_cidr: str) -> None:
    """The kernel settings, the local nodes' pod networks and the service CIDR's route.

    A pod network of the wrong subnet is a start-up error (DriverError); a node that does
    not answer yet gets its network at its first pod.
    """
    nft.ensure_sysctls()
    local = [n for n in nodes if n.url.startswith("unix://") and n.driver is not None]
    for binding in local:
        assert binding.driver is not None
        nft.ensure_pod_cidr_fallback(binding.pod_cidr)
        try:
            binding.driver.ensure_network()
        except NodeUnreachable as exc:
            log.warning("the pod network is made when the node answers", node=binding.name, error=str(exc))
    src = node_address(local[0].pod_cidr) if local else None
    if nft.ensure_service_route(service_cidr, src=src):
        log.info("added a route for the service CIDR (the host has none)", cidr=service_cidr)


def bridges(drivers: Iterable[NodeDriver]) -> list[str]:
    """The local pod networks' bridge interfaces (a node that does not answer has none yet)."""
    names = []
    for driver in drivers:
        try:
            bridge = driver.ensure_network()
        except DriverError:
            continue
        if bridge:
            names.append(bridge)
    return names


def cleanup_data_plane(config: Config) -> int:
    """`reconciler daemon --cleanup`: remove the Service data plane's nftables table (and the
    pod CIDRs' fallback routes) and exit.

    The table outlives the daemon on purpose; this is how it goes (as ``kube-proxy --cleanup``).
    """
    try:
        table = NftTable(table=config.nft_table)
        existed = table.exists()
        table.cleanup()
        for node in config.nodes or [NodeConfig(name="local", url="", pod_cidr=DEFAULT_POD_CIDR)]:
            table.remove_pod_cidr_fallback(node.pod_cidr)
        PodRoutes().clear()  # the routes to other nodes' pods (host-gw) go too
    except (NftMissing, NftError, RouteError, ValueError) as exc:
        print(f"reconciler: {exc}", file=sys.stderr)
        return 1
    print(f"removed the nftables table ip {config.nft_table}" if existed
          else f"no nftables table ip {config.nft_table} to remove")
    return 0
