"""Routes between nodes' pod networks, as flannel's host-gw backend makes them.

Every node's pods live on its own bridge, in its own pod CIDR. For a pod on one node to
reach a pod on another, each node routes every other node's pod CIDR via that node's
address (``ip route replace 10.244.1.0/24 via 198.18.0.11``): no tunnel, no overlay, the
nodes only need to share a link. A node that leaves gets its route removed.

Which routes are ours: every route this module makes carries the routing protocol number
``PROTO`` (``ip route ... proto 199``), so a sync lists exactly our routes, replaces what
changed and deletes what is no longer wanted, and never touches a route someone else made.

Why the ``ip`` command and not a netlink library: iproute2 is on every host (the set-up
installs it), the agent shells out to ``nft`` for its ruleset in the same way, and a sync
is a handful of calls when nodes come or go, so pyroute2 would add a dependency for little.
"""
from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import structlog

from reconciler.core.bodies import Body
from reconciler.core.nodes import internal_ip

log = structlog.get_logger("routes")

PROTO = "199"  # our routes' protocol number (iproute2's rt_protos leaves 199 unassigned)


class RouteError(Exception):
    """A route could not be listed or changed."""


@dataclass(frozen=True, order=True)
class Route:
    cidr: str  # another node's pod CIDR
    via: str  # that node's address


def wanted_routes(nodes: Iterable[Body], *, me: str | Iterable[str]) -> list[Route]:
    """One route per other node (not ``me``: one name, or all the nodes of this host) that has a
    pod CIDR and an InternalIP."""
    mine = {me} if isinstance(me, str) else set(me)
    routes: list[Route] = []
    for node in nodes:
        meta = node.get("metadata") or {}
        if meta.get("name") in mine:
            continue
        cidr = (node.get("spec") or {}).get("podCIDR")
        via = internal_ip(node)
        if not cidr or not via:
            continue
        try:
            network = ipaddress.ip_network(cidr, strict=False)
            gateway = ipaddress.ip_address(via)
        except ValueError:
            continue  # a Node we cannot route to is the node controller's problem, not a reason to fail all
        if gateway in network:
            continue  # its address is on its own bridge (a node on this very machine): nothing to route
        routes.append(Route(cidr=str(network), via=str(gateway)))
    return sorted(set(routes))


class PodRoutes:
    """Keeps this host's routes to the other nodes' pod CIDRs equal to ``wanted_routes``."""

    def __init__(self, *, netns: str | None = None) -> None:
        # netns: run in that network namespace (tests; a node agent runs in its host's own).
        self._prefix: Sequence[str] = ("nsenter", f"--net=/run/netns/{netns}") if netns else ()

    def _ip(self, *args: str) -> str:
        try:
            done = subprocess.run([*self._prefix, "ip", *args], capture_output=True, text=True, timeout=30)
        except FileNotFoundError:
            raise RouteError("the ip command is missing: install the Debian package iproute2.") from None
        except subprocess.TimeoutExpired:
            raise RouteError(f"ip {' '.join(args)} did not finish within 30 s.") from None
        if done.returncode != 0:
            raise RouteError(f"ip {' '.join(args)}: {done.stderr.strip() or 'failed'}")
        return done.stdout

    def current(self) -> list[Route]:
        """Our routes as the kernel has them."""
        listed = json.loads(self._ip("-json", "route", "show", "proto", PROTO) or "[]")
        return sorted(Route(cidr=r["dst"], via=r.get("gateway", "")) for r in listed if r.get("dst"))

    def sync(self, wanted: Iterable[Route]) -> Mapping[str, list[Route]]:
        """Add or replace the wanted routes, delete our others; returns what changed."""
        want = sorted(set(wanted))
        have = self.current()
        added = [r for r in want if r not in have]
        removed = [r for r in have if r.cidr not in {w.cidr for w in want}]
        failed: list[str] = []
        # Each route on its own: one node whose address this host cannot reach (not on a shared
        # link) must not keep the others' routes from being made.
        for route in added:
            try:
                self._ip("route", "replace", route.cidr, "via", route.via, "proto", PROTO)
            except RouteError as exc:
                failed.append(str(exc))
        for route in removed:
            try:
                self._ip("route", "delete", route.cidr, "proto", PROTO)
            except RouteError as exc:
                failed.append(str(exc))
        if failed:
            raise RouteError("; ".join(failed))
        return {"added": added, "removed": removed}

    def clear(self) -> None:
        """Remove every route of ours (an explicit clean-up; stopping the agent keeps them)."""
        self.sync([])


RETRY_AFTER = 5.0  # seconds before a failed route sync is tried again


def sync_logged(routes: PodRoutes, nodes: Iterable[Body], *, me: str | Iterable[str]) -> float | None:
    """One host's route sync as a controller runs it: logs what changed or failed; returns the
    seconds after which to try again (None: done)."""
    try:
        changed = routes.sync(wanted_routes(nodes, me=me))
    except RouteError as exc:
        log.warning("cannot route to the other nodes' pods; retrying", error=str(exc), action="route")
        return RETRY_AFTER
    if changed["added"] or changed["removed"]:
        log.info("routes to other nodes' pods", added=[r.cidr for r in changed["added"]],
                 removed=[r.cidr for r in changed["removed"]], action="route")
    return None
