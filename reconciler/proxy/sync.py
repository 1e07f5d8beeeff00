"""Keeps the node's kernel data plane in step with the store: kube-proxy's sync loop.

One work item ("all"), deduplicated, re-run whenever a Service, Endpoints or Pod
changes. What the run reads of those objects is kept in a ``ProxyView`` (``view.py``),
kube-proxy's informers: fed by the store's watch (``watch_store``), a run reads only the
objects that changed, so its cost follows the change, not the cluster's size. Each run:

1. when a Service, an Endpoints or a local node's address changed (or the last write
   failed), renders the ``ProxyState`` from the view (``state.build_state``: Services
   with their cluster IP, ports, node ports and session affinity; the ready Endpoints
   addresses; the local nodes' addresses, which a NodePort answers on besides 127.0.0.1)
   and hands it to ``NftTable.sync`` — one atomic ``nft -f`` transaction, partial when
   only some Services or endpoints changed. A run after Pod changes alone renders nothing:
   the rules are made of Services and Endpoints. No process stands in the traffic: the
   table keeps answering while the daemon is stopped, killed or restarting, and the next
   start simply syncs it again (a full rebuild, since a new process does not know what
   the kernel holds);
2. puts the local pod bridges' ports into hairpin mode (a new pod's veth starts with it
   off; without it a pod cannot reach itself through its own Service — see
   ``NftTable.settle_bridge``, which also pins the bridge's MAC); drops the host's ARP
   entry for each newly started pod's address (an address is reused after its pod is
   gone, with a new MAC; see ``NftTable.forget_neighbour``); and deletes the connection
   entries of addresses no pod holds any more;
3. keeps running pods' /etc/hosts current (below).

It also answers the node agent's question before a teardown: is this pod IP still a
backend the rules may send new connections to? (Until the endpoints controller has
taken it out and that change is in the kernel.)

Names stay current: for each running pod on a local node (host
network included) the Service entries its /etc/hosts should hold (``service_hosts``, as
at creation; computed once per namespace per Services change) are compared with those
last written for it — every local pod after a Services change, only the changed pods
otherwise — and only a difference (a Service added, removed or readdressed; or a
container restart, after which the engine may have rewritten the file) costs a
``set_hosts``. A pod first seen is written once (the driver answers that from memory when
the pod was created with the same entries: no engine call); while no Service has had a
ClusterIP since the daemon started, there is nothing to write and no pod is looked up. A
pod whose file cannot be written is reported once and tried again on the next run;
nothing here can fail the data plane's sync.
"""
from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from reconciler.core.bodies import Body
from reconciler.core.servicehosts import service_hosts
from reconciler.core.workqueue import Result
from reconciler.proxy.nftables import NftError, NftTable
from reconciler.proxy.nftables.model import ProxyState
from reconciler.proxy.state import build_state, cluster_ip
from reconciler.proxy.view import Key, ProxyView, Refreshed
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
        self._view = ProxyView(store=store, local_nodes=frozenset(self._drivers))
        self._neighbours_fresh: dict[Key, tuple[str, str]] = {}  # pod -> (uid, IP) whose ARP entry was dropped
        self._conntrack_missing_said = False
        self._extra_node_ips = tuple(extra_node_ips)
        self._cluster_cidr = cluster_cidr
        self._applied: ProxyState | None = None  # the state last in the kernel (None: render at the next run)
        self._node_ips: tuple[str, ...] = ()
        self._serving: frozenset[str] = frozenset()
        self._problems: frozenset[str] = frozenset()  # logged once each, while they last
        # Pod -> (uid, hosts entries, restart signature) its /etc/hosts was last brought to.
        self._hosts_written: dict[Key, tuple[str, tuple[tuple[str, str], ...], tuple[tuple[str, int], ...]]] = {}
        self._hosts_retry: set[Key] = set()  # running pods whose write failed: looked at again each run
        self._hosts_warned: dict[Key, str] = {}  # pod -> the uid whose failure was logged already
        self._had_cluster_ips = False  # some Service had a ClusterIP since the daemon started
        self._services_sorted: list[Body] | None = None  # the view's Services in list order (None: redo)
        self._hosts_by_namespace: dict[str, tuple[tuple[str, str], ...]] = {}
        self._noted: Callable[[str, str, str], None] | None = None  # the store watch, once watch_store ran
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

    def watch_store(self, wake: Callable[[], None]) -> None:
        """Keep the view from the store's watch, and call ``wake`` after each change it keeps.

        ``wake`` adds this sync's work item to its queue. The view marks the change before
        ``wake`` runs, so the run it causes reads it, whatever order the store calls its
        watchers in (a queue woken by another watcher could run before the mark). Without
        this call every run lists everything (the unit tests' simple mode)."""
        def noted(kind: str, namespace: str, name: str) -> None:
            if self._view.noted(kind, namespace, name):
                wake()

        self._store.watch(noted)
        self._noted = noted
        self._view.watching()

    def close(self) -> None:
        """Stop watching the store (a replaced sync must not wake a queue nobody runs)."""
        if self._noted is not None:
            self._store.unwatch(self._noted)
            self._noted = None

    def reconcile(self, _key: Any) -> Result | None:
        changed = self._view.refresh()
        node_ips = tuple(self.node_ips())
        result: Result | None = None
        if self._applied is None or changed.services or changed.endpoints or node_ips != self._node_ips:
            result = self._sync_table(node_ips)
        else:
            # Nothing the rules are made of changed: the table is as it was (a rendering would be
            # the same), but rows left behind by an earlier update may be due for removal.
            self._table.remove_stale_rows()
        self._settle_bridges()
        self._forget_stale_neighbours(changed)
        self._forget_gone_connections(changed.gone_ips)
        try:
            self._sync_hosts(changed)
        except Exception as exc:  # names are a convenience: they must never stop the data plane
            log.warning("cannot bring pods' /etc/hosts up to date", error=str(exc))
        return result

    def _sync_table(self, node_ips: tuple[str, ...]) -> Result | None:
        """The ruleset rendered from the view's Services and Endpoints: one atomic transaction."""
        state, problems = build_state(services=self._view.services.values(), endpoints=self._view.endpoints.values(),
                                      node_ips=node_ips, cluster_cidr=self._cluster_cidr)
        for problem in sorted(set(problems) - self._problems):
            log.warning(problem)
        self._problems = frozenset(problems)
        try:
            kind = self._table.sync(state)
        except NftError as exc:
            self._applied = None  # the next run renders again, whatever changed or not
            log.error("cannot write the Service data plane; retrying", error=str(exc), table=self._table.table)
            return Result(requeue_after=RETRY_AFTER)
        self._applied, self._node_ips = state, node_ips
        if kind != "unchanged":
            log.debug("data plane synced", sync=kind, seconds=round(self._table.last_seconds, 4),
                      services=len(state.services))
        serving = frozenset(ep.ip for eps in state.services.values() for ep in eps)
        with self._lock:
            self._serving = serving
        return None

    def _settle_bridges(self) -> None:
        for bridge in self._bridges():
            try:
                self._table.settle_bridge(bridge)
            except NftError as exc:
                # A bridge netavark has not made yet (no pod started) or just removed (its last
                # pod gone) has no ports to set; the next pod's start re-runs this.
                log.debug("bridge not settled (MAC, hairpin)", bridge=bridge, error=str(exc))

    def _forget_stale_neighbours(self, changed: Refreshed) -> None:
        """Once per started local pod: drop the ARP entry a previous holder of its IP left."""
        for key, (_before, pod) in changed.pods.items():
            if pod is None or pod.host_network or not pod.ip or not pod.started:
                self._neighbours_fresh.pop(key, None)
                continue
            if self._neighbours_fresh.get(key) == (pod.uid, pod.ip):
                continue
            bridge = self._bridge_of(pod.node)
            if bridge:
                self._table.forget_neighbour(pod.ip, bridge=bridge)
            self._neighbours_fresh[key] = (pod.uid, pod.ip)

    def _forget_gone_connections(self, gone: list[str]) -> None:
        """Once a pod is gone, the kernel's connection entries that lead to its IP go too
        (``NftTable.forget_connections`` says why). Pods on the host's network are not counted
        (``ProxyView``): their address is the host's."""
        for ip in gone:
            try:
                if self._table.forget_connections(ip) is None and not self._conntrack_missing_said:
                    self._conntrack_missing_said = True
                    log.warning("the conntrack tool is missing: connections of removed pods are left to time out "
                                "(install the Debian package `conntrack`)")
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("cannot delete the connection entries of a removed pod", pod_ip=ip, error=str(exc))

    def _sync_hosts(self, changed: Refreshed) -> None:
        if changed.services or self._services_sorted is None:
            held = self._view.services
            # The store's list order, as the kubelet's ``service_hosts`` at creation sees them.
            self._services_sorted = [held[k] for k in sorted(held)]
            self._hosts_by_namespace = {}
            if any(cluster_ip(svc) for svc in self._services_sorted):
                self._had_cluster_ips = True
            keys: Iterable[Key] = list(self._view.local_pods)  # every pod's entries may have changed
        else:
            keys = changed.pods.keys() | self._hosts_retry
        for key, (_before, after) in changed.pods.items():
            if after is None or not after.running:
                self._hosts_written.pop(key, None)
                self._hosts_retry.discard(key)
                self._hosts_warned.pop(key, None)
        for key in keys:
            pod = self._view.local_pods.get(key)
            if pod is None or not pod.running:
                continue
            self._hosts_retry.discard(key)
            hosts = self._hosts_of(pod.namespace)
            wanted = (pod.uid, hosts, pod.restarts)
            written = self._hosts_written.get(key)
            if written == wanted:
                continue
            if (written is None or written[0] != pod.uid) and not hosts and not self._had_cluster_ips:
                # Created while no Service had an address: its file has no entries to change.
                self._hosts_written[key] = wanted
                continue
            try:
                self._drivers[pod.node].set_hosts(namespace=pod.namespace, name=pod.name, hosts=hosts)
            except Exception as exc:  # one pod's file must not stop the others
                self._hosts_retry.add(key)  # tried again on the next run, whatever changes
                if self._hosts_warned.get(key) != pod.uid:
                    self._hosts_warned[key] = pod.uid
                    log.warning("cannot update /etc/hosts inside a pod", pod=f"{pod.namespace}/{pod.name}",
                                error=str(exc))
                continue
            # False (the file is not reachable from here) is remembered too: asking again before
            # the next change would cost the engine the same inspects for the same answer.
            self._hosts_written[key] = wanted

    def _hosts_of(self, namespace: str) -> tuple[tuple[str, str], ...]:
        """A namespace's entries, computed once per Services change (not once per pod)."""
        hosts = self._hosts_by_namespace.get(namespace)
        if hosts is None:
            hosts = self._hosts_by_namespace[namespace] = service_hosts(namespace=namespace,
                                                                        services=self._services_sorted or ())
        return hosts


