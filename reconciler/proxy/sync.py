"""Keeps the service proxy in step with the store: the kube-proxy's sync loop.

One work item ("all"), deduplicated, re-run whenever a Service, Endpoints or Pod
changes: it hands every Service and Endpoints to the proxy (which listens on
ClusterIP and NodePort addresses on the host) and, for each running pod on a
local node, opens the ClusterIP listeners inside the pod's own network
namespace — how ``wget http://web/`` reaches a Service from inside a container.

It also answers the node agent's question before a teardown: is this pod IP
still a backend the proxy may send new connections to?

Cost: finding a pod's netns is two engine calls (an inspect of the pod and of its
sandbox), and podman 4.3's inspects hold locks that slow the creates and starts
running beside them. So nothing is looked up while no Service has a ClusterIP
port to listen on (there would be nothing to open inside a pod): a burst of pod
starts then costs the engine nothing here. It cannot be narrowed to the
namespaces that have Services: a pod reaches a Service of any namespace by its
qualified name (``web.other``) or its ClusterIP. When the first Service comes,
its change re-runs the sync, which looks every running pod up then. A path found
is remembered per pod uid, so each pod is looked up once while it runs.

Names stay current the same way: for each running pod on a local node (host
network included) the Service entries its /etc/hosts should hold
(``service_hosts``, as at creation) are compared with those last written for its
uid, and only a difference (a Service added, removed or readdressed; or a
container restart, after which the engine may have rewritten the file) costs a
``set_hosts``. A pod first seen is written once, which also moves its create-time
entries into the driver's block; while no Service has had a ClusterIP since the
daemon started, there is nothing to write and no pod is looked up. A pod whose
file cannot be written is reported once and tried again on the next change;
nothing here can fail the proxy sync.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import structlog

from reconciler.core import objects as o
from reconciler.core.bodies import Body
from reconciler.core.servicehosts import service_hosts
from reconciler.core.workqueue import Result
from reconciler.proxy.userspace import ServiceProxy, cluster_ip_listeners
from runtime.driver import DriverError, NodeDriver

log = structlog.get_logger("proxysync")



class ProxySync:
    def __init__(self, *, store: Any, proxy: ServiceProxy, local_drivers: Mapping[str, NodeDriver]) -> None:
        self._store = store
        self._proxy = proxy
        self._drivers = dict(local_drivers)  # node name -> driver, for nodes whose netns we can enter
        self._serving: frozenset[str] = frozenset()
        self._netns: dict[str, str] = {}  # pod uid -> netns path we serve in
        self._listeners_for: dict[str, tuple] = {}
        # Pod uid -> (hosts entries, restart signature) its /etc/hosts was last brought to.
        self._hosts_written: dict[str, tuple] = {}
        self._hosts_warned: set[str] = set()  # pod uids whose failure was logged already
        self._had_cluster_ips = False  # some Service had a ClusterIP since the daemon started
        self._lock = threading.Lock()

    def still_serving(self, ip: str) -> bool:
        """True while ``ip`` may get new connections or still has open ones."""
        with self._lock:
            if ip in self._serving:
                return True
        return self._proxy.open_connections_to(ip) > 0

    def reconcile(self, _key: Any) -> Result | None:
        services = self._store.list("Service")
        endpoints = self._store.list("Endpoints")
        self._proxy.sync(services=services, endpoints=endpoints)
        serving = frozenset(a.get("ip") for ep in endpoints for subset in ep.get("subsets") or []
                            for a in subset.get("addresses") or [] if a.get("ip"))
        with self._lock:
            self._serving = serving
        self._sync_netns(services)
        try:
            self._sync_hosts(services)
        except Exception as exc:  # names are a convenience: they must never stop the proxy
            log.warning("cannot bring pods' /etc/hosts up to date", error=str(exc))
        return None

    def _sync_hosts(self, services: list[Body]) -> None:
        if any(_has_cluster_ip(svc) for svc in services):
            self._had_cluster_ips = True
        running: set[str] = set()
        for pod in self._store.list("Pod"):
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

    def _sync_netns(self, services: list[Body]) -> None:
        listeners = cluster_ip_listeners(services)
        wanted: dict[str, str] = {}
        # No ClusterIP port anywhere: nothing to serve inside any pod, so no pod is looked up
        # (and pods served before are forgotten below, closing their listeners).
        for pod in self._store.list("Pod") if listeners else []:
            uid = pod["metadata"].get("uid", "")
            node = (pod.get("spec") or {}).get("nodeName")
            driver = self._drivers.get(node or "")
            if driver is None or o.is_terminating(pod) or (pod.get("spec") or {}).get("hostNetwork"):
                continue
            if (pod.get("status") or {}).get("phase") != "Running":
                continue
            path = self._netns.get(uid)
            if path is None:
                try:
                    path = driver.netns_path(namespace=pod["metadata"]["namespace"], name=pod["metadata"]["name"])
                except DriverError:
                    path = None
            if path:
                wanted[uid] = path
        for uid, path in list(self._netns.items()):
            if uid not in wanted:
                self._proxy.forget_netns(path)
                self._netns.pop(uid, None)
                self._listeners_for.pop(uid, None)
        signature = tuple(sorted((ip, port) for ip, port, _ in listeners))
        for uid, path in wanted.items():
            if self._netns.get(uid) == path and self._listeners_for.get(uid) == signature:
                continue
            try:
                self._proxy.serve_in_netns(netns_path=path, listeners=listeners)
            except Exception as exc:  # a pod that just went away must not stop the others
                log.warning("cannot serve services inside a pod", netns=path, error=str(exc))
                continue
            self._netns[uid] = path
            self._listeners_for[uid] = signature


def _has_cluster_ip(service: Body) -> bool:
    ip = (service.get("spec") or {}).get("clusterIP")
    return bool(ip) and ip != "None"


def _restarts(pod: Body) -> tuple[tuple[str, int], ...]:
    """Each container's restart count: a restarted container may have had its hosts file rewritten."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return tuple(sorted((str(s.get("name", "")), int(s.get("restartCount") or 0)) for s in statuses))
