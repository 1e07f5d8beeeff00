"""Keeps the node's kernel data plane in step with the store: kube-proxy's sync loop.

One work item ("all"), deduplicated, re-run whenever a Service, Endpoints or Pod
changes. Each run:

1. builds the ``ProxyState`` (``state.build_state``: Services with their cluster IP,
   ports, node ports and session affinity; the ready Endpoints addresses; the local
   nodes' addresses, which a NodePort answers on besides 127.0.0.1) and hands it to
   ``NftTable.sync`` — one atomic ``nft -f`` transaction, partial when only some
   Services or endpoints changed, nothing at all when nothing did. No process stands
   in the traffic: the table keeps answering while the daemon is stopped, killed or
   restarting, and the next start simply syncs it again (a full rebuild, since a new
   process does not know what the kernel holds);
2. puts the local pod bridges' ports into hairpin mode (a new pod's veth starts with it
   off; without it a pod cannot reach itself through its own Service — see
   ``NftTable.settle_bridge``, which also pins the bridge's MAC), and drops the host's ARP entry for each newly started
   pod's address (an address is reused after its pod is gone, with a new MAC; see
   ``NftTable.forget_neighbour``);
3. keeps running pods' /etc/hosts current (below).

It also answers the node agent's question before a teardown: is this pod IP still a
backend the rules may send new connections to? (Until the endpoints controller has
taken it out and that change is in the kernel.)

Names stay current the same way as before: for each running pod on a local node (host
network included) the Service entries its /etc/hosts should hold (``service_hosts``, as
at creation) are compared with those last written for its uid, and only a difference (a
Service added, removed or readdressed; or a container restart, after which the engine
may have rewritten the file) costs a ``set_hosts``. A pod first seen is written once,
which also moves its create-time entries into the driver's block; while no Service has
had a ClusterIP since the daemon started, there is nothing to write and no pod is looked
up. A pod whose file cannot be written is reported once and tried again on the next
change; nothing here can fail the data plane's sync.
"""
from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from reconciler.core import objects as o
from reconciler.core.bodies import Body
from reconciler.core.servicehosts import service_hosts
from reconciler.core.workqueue import Result
from reconciler.proxy.nftables import NftError, NftTable
from reconciler.proxy.state import build_state, cluster_ip
from runtime.driver import NodeDriver

log = structlog.get_logger("proxysync")

RETRY_AFTER = 1.0  # seconds before a sync nft refused is tried again


class ProxySync:
    """``reconcile`` is the work queue's handler; ``still_serving`` the node agents' question.

    ``local_drivers``: node name -> driver, for the nodes on this host (their pods' hosts
    files are reachable, their addresses take NodePorts). ``bridges()``: the local pod
    bridges' interface names (hairpin); ``bridge_of(node)``: one node's (None: unknown).
    ``extra_node_ips``: more addresses a NodePort answers on (e.g. the host's own), besides
    the local Nodes' InternalIPs and 127.0.0.1.
    """

    def __init__(self, *, store: Any, table: NftTable, local_drivers: Mapping[str, NodeDriver],
                 bridges: Callable[[], Iterable[str]] = tuple,
                 bridge_of: Callable[[str], str | None] = lambda _node: None,
                 extra_node_ips: Iterable[str] = (), cluster_cidr: str | None = None) -> None:
        self._store = store
        self._table = table
        self._drivers = dict(local_drivers)
        self._bridges = bridges
        self._bridge_of = bridge_of
        self._neighbours_fresh: dict[str, str] = {}  # pod uid -> its IP, whose ARP entry was dropped
        self._pod_ips: frozenset[str] | None = None  # every pod's IP at the last sync (None: none yet)
        self._conntrack_missing_said = False
        self._extra_node_ips = tuple(extra_node_ips)
        self._cluster_cidr = cluster_cidr
        self._serving: frozenset[str] = frozenset()
        self._problems: frozenset[str] = frozenset()  # logged once each, while they last
        # Pod uid -> (hosts entries, restart signature) its /etc/hosts was last brought to.
        self._hosts_written: dict[str, tuple] = {}
        self._hosts_warned: set[str] = set()  # pod uids whose failure was logged already
        self._had_cluster_ips = False  # some Service had a ClusterIP since the daemon started
        self._lock = threading.Lock()

    def still_serving(self, ip: str) -> bool:
        """True while ``ip`` is a ready endpoint in the kernel's rules."""
        with self._lock:
            return ip in self._serving

    def node_ips(self) -> list[str]:
        """The local nodes' addresses (their InternalIPs, as the kubelet reported them)."""
        ips = list(self._extra_node_ips)
        for name in self._drivers:
            node = self._store.get("Node", "", name)
            for address in ((node or {}).get("status") or {}).get("addresses") or []:
                if address.get("type") == "InternalIP" and address.get("address"):
                    ips.append(str(address["address"]))
        return ips

    def reconcile(self, _key: Any) -> Result | None:
        services = self._store.list("Service")
        endpoints = self._store.list("Endpoints")
        state, problems = build_state(services=services, endpoints=endpoints, node_ips=self.node_ips(),
                                      cluster_cidr=self._cluster_cidr)
        for problem in sorted(set(problems) - self._problems):
            log.warning(problem)
        self._problems = frozenset(problems)
        try:
            kind = self._table.sync(state)
        except NftError as exc:
            log.error("cannot write the Service data plane; retrying", error=str(exc), table=self._table.table)
            return Result(requeue_after=RETRY_AFTER)
        if kind != "unchanged":
            log.debug("data plane synced", sync=kind, seconds=round(self._table.last_seconds, 4),
                      services=len(state.services))
        serving = frozenset(ep.ip for eps in state.services.values() for ep in eps)
        with self._lock:
            self._serving = serving
        self._settle_bridges()
        # One listing for the three pod passes: a run follows every Pod change, and decoding
        # every pod was most of a control plane's CPU while thousands of pods were created
        # (profiled with 3,000 pods on etcd, bench/etcd.py). The local passes read only the pods
        # of this host's nodes.
        pods = self._store.list("Pod")
        local = [pod for pod in pods if ((pod.get("spec") or {}).get("nodeName") or "") in self._drivers]
        self._forget_stale_neighbours(local)
        self._forget_gone_connections(pods)
        try:
            self._sync_hosts(services, local)
        except Exception as exc:  # names are a convenience: they must never stop the data plane
            log.warning("cannot bring pods' /etc/hosts up to date", error=str(exc))
        return None

    def _settle_bridges(self) -> None:
        for bridge in self._bridges():
            try:
                self._table.settle_bridge(bridge)
            except NftError as exc:
                # A bridge netavark has not made yet (no pod started) or just removed (its last
                # pod gone) has no ports to set; the next pod's start re-runs this.
                log.debug("bridge not settled (MAC, hairpin)", bridge=bridge, error=str(exc))

    def _forget_stale_neighbours(self, local: list[Body]) -> None:
        """Once per started local pod: drop the ARP entry a previous holder of its IP left."""
        seen: dict[str, str] = {}
        for pod in local:
            spec, status = pod.get("spec") or {}, pod.get("status") or {}
            node, ip, uid = spec.get("nodeName") or "", status.get("podIP"), pod["metadata"].get("uid", "")
            if node not in self._drivers or spec.get("hostNetwork") or not ip or status.get("phase") != "Running":
                continue
            seen[uid] = ip
            if self._neighbours_fresh.get(uid) == ip:
                continue
            bridge = self._bridge_of(node)
            if bridge:
                self._table.forget_neighbour(ip, bridge=bridge)
            self._neighbours_fresh[uid] = ip
        self._neighbours_fresh = {uid: ip for uid, ip in self._neighbours_fresh.items() if uid in seen}

    def _forget_gone_connections(self, pods: list[Body]) -> None:
        """Once a pod is gone, the kernel's connection entries that lead to its IP go too
        (``NftTable.forget_connections`` says why). Pods on the host's network are skipped:
        their address is the host's."""
        ips = frozenset(ip for pod in pods
                        if (ip := (pod.get("status") or {}).get("podIP")) and not (pod.get("spec") or {}).get("hostNetwork"))
        gone = sorted(self._pod_ips - ips) if self._pod_ips is not None else []
        self._pod_ips = ips
        for ip in gone:
            try:
                if self._table.forget_connections(ip) is None and not self._conntrack_missing_said:
                    self._conntrack_missing_said = True
                    log.warning("the conntrack tool is missing: connections of removed pods are left to time out "
                                "(install the Debian package `conntrack`)")
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("cannot delete the connection entries of a removed pod", pod_ip=ip, error=str(exc))

    def _sync_hosts(self, services: list[Body], local: list[Body]) -> None:
        if any(cluster_ip(svc) for svc in services):
            self._had_cluster_ips = True
        running: set[str] = set()
        for pod in local:
            meta, spec = pod["metadata"], pod.get("spec") or {}
            uid = meta.get("uid", "")
            driver = self._drivers.get(spec.get("nodeName") or "")
            if driver is None or o.is_terminating(pod) or (pod.get("status") or {}).get("phase") != "Running":
                continue
            running.add(uid)
            hosts = service_hosts(namespace=meta["namespace"], services=services)
            wanted = (hosts, _restarts(pod))
            if self._hosts_written.get(uid) == wanted:
                continue
            if uid not in self._hosts_written and not hosts and not self._had_cluster_ips:
                # Created while no Service had an address: its file has no entries to change.
                self._hosts_written[uid] = wanted
                continue
            try:
                driver.set_hosts(namespace=meta["namespace"], name=meta["name"], hosts=hosts)
            except Exception as exc:  # one pod's file must not stop the others
                if uid not in self._hosts_warned:
                    self._hosts_warned.add(uid)
                    log.warning("cannot update /etc/hosts inside a pod", pod=f"{meta['namespace']}/{meta['name']}",
                                error=str(exc))
                continue
            # False (the file is not reachable from here) is remembered too: asking again before
            # the next change would cost the engine the same inspects for the same answer.
            self._hosts_written[uid] = wanted
        for uid in list(self._hosts_written):
            if uid not in running:
                del self._hosts_written[uid]
        self._hosts_warned &= running


def _restarts(pod: Body) -> tuple[tuple[str, int], ...]:
    """Each container's restart count: a restarted container may have had its hosts file rewritten."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return tuple(sorted((str(s.get("name", "")), int(s.get("restartCount") or 0)) for s in statuses))
