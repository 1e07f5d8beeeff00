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
"""
from __future__ import annotations

import threading
from typing import Any, Mapping

import structlog

from reconciler import objects as o
from reconciler.proxy import ServiceProxy, cluster_ip_listeners
from reconciler.workqueue import Result
from runtime.driver import DriverError, NodeDriver

log = structlog.get_logger("proxysync")

Obj = dict[str, Any]


class ProxySync:
    def __init__(self, *, store: Any, proxy: ServiceProxy, local_drivers: Mapping[str, NodeDriver]) -> None:
        self._store = store
        self._proxy = proxy
        self._drivers = dict(local_drivers)  # node name -> driver, for nodes whose netns we can enter
        self._serving: frozenset[str] = frozenset()
        self._netns: dict[str, str] = {}  # pod uid -> netns path we serve in
        self._listeners_for: dict[str, tuple] = {}
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
        return None

    def _sync_netns(self, services: list[Obj]) -> None:
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
