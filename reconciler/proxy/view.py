"""The data plane's memory of the store: what the proxy's sync needs of each object, kept from the watch.

kube-proxy's informers, for ``ProxySync``: the Services and Endpoints (slimmed to the fields
``state.build_state`` and the hosts entries read), every Pod's address, and the few facts
of each pod on a local node (node, address, phase, restarts). ``noted`` is the store's watch
callback: it only marks the object's key; ``refresh`` (the sync's worker) then reads just
the marked objects and says what changed. So a run after one Pod change decodes one pod,
where a listing decoded every pod each run (with 3,000 pods being created on etcd that was
most of the control plane's CPU, and the decoded lists most of its transient memory).

Until ``watched`` is set (the store's watch registered, see ``ProxySync.watch_store``), and
on the first refresh, everything is read by listing; the answer has the same shape, so one
code path serves both. A key marked while a refresh reads is kept for the next one: the
marks are taken before the reads, and a read returns the object as it is now.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from reconciler.core import objects as o
from reconciler.core.bodies import Body

Key = tuple[str, str]  # (namespace, name)
KINDS = ("Service", "Endpoints", "Pod")


@dataclass(frozen=True, slots=True)
class PodFacts:
    """What the sync reads of a pod on a local node."""

    uid: str
    namespace: str
    name: str
    node: str
    ip: str | None
    host_network: bool
    running: bool  # phase Running and not terminating
    started: bool  # phase Running (terminating or not): its address has its own ARP entry
    restarts: tuple[tuple[str, int], ...]  # a restarted container may have had its hosts file rewritten


@dataclass(kw_only=True)
class Refreshed:
    """What one ``refresh`` changed: Services or Endpoints at all, and each local pod changed."""

    services: bool = False
    endpoints: bool = False
    pods: dict[Key, tuple[PodFacts | None, PodFacts | None]] = field(default_factory=dict)  # before, after
    gone_ips: list[str] = field(default_factory=list)  # pod addresses no pod holds any more


class ProxyView:
    """Per-object derived state for ``ProxySync``, updated from the watch (one reader: its worker)."""

    def __init__(self, *, store: Any, local_nodes: frozenset[str]) -> None:
        self._store = store
        self._local_nodes = local_nodes
        self.watched = False  # see watching()
        self._lock = threading.Lock()
        self._marked: dict[str, set[Key]] = {kind: set() for kind in KINDS}
        self._listed = False  # the first refresh lists everything
        self.services: dict[Key, Body] = {}
        self.endpoints: dict[Key, Body] = {}
        self.local_pods: dict[Key, PodFacts] = {}
        self._pod_ip: dict[Key, str] = {}  # every pod's address (host-network pods have the host's: left out)
        self._ip_holders: dict[str, int] = {}

    def watching(self) -> None:
        """The store's watch now marks every change (registered before this call): from the next
        refresh, which lists everything once more, only marked objects are read."""
        self.watched = True
        self._listed = False

    def noted(self, kind: str, namespace: str, name: str) -> bool:
        """The store's watch callback: True when ``kind`` matters here (then the key is marked)."""
        if kind not in KINDS:
            return False
        with self._lock:  # the same lock as refresh's swap: a mark is never added to a set already taken
            self._marked[kind].add((namespace or "", name))
        return True

    def refresh(self) -> Refreshed:
        with self._lock:
            marked, self._marked = self._marked, {kind: set() for kind in KINDS}
        full = not (self.watched and self._listed)
        self._listed = True
        out = Refreshed()
        if full:
            self._relist(out)
            return out
        for key in marked["Service"]:
            out.services |= _put(self.services, key, _slim_service(self._store.get("Service", *key)))
        for key in marked["Endpoints"]:
            out.endpoints |= _put(self.endpoints, key, _slim_endpoints(self._store.get("Endpoints", *key)))
        maybe_gone: set[str] = set()
        for key in marked["Pod"]:
            self._pod(key, self._store.get("Pod", *key), out, maybe_gone)
        out.gone_ips = sorted(ip for ip in maybe_gone if not self._ip_holders.get(ip))
        return out

    def _relist(self, out: Refreshed) -> None:
        """Everything from listings (the first refresh, or not watched): the same answer as marks would give."""
        for kind, held, slim in (("Service", self.services, _slim_service), ("Endpoints", self.endpoints, _slim_endpoints)):
            now = {o.key_of(obj)[1:]: slim(obj) for obj in self._store.list(kind)}
            if now != held:
                held.clear()
                held.update({k: v for k, v in now.items() if v is not None})
                out.services |= kind == "Service"
                out.endpoints |= kind == "Endpoints"
        maybe_gone: set[str] = set()
        seen: set[Key] = set()
        for pod in self._store.list("Pod"):
            key = (pod["metadata"].get("namespace") or "", pod["metadata"]["name"])
            seen.add(key)
            self._pod(key, pod, out, maybe_gone)
        for key in [k for k in (*self._pod_ip, *self.local_pods) if k not in seen]:
            self._pod(key, None, out, maybe_gone)
        # A new process knows no earlier addresses (it holds none): nothing is "gone" on its first listing.
        out.gone_ips = sorted(ip for ip in maybe_gone if not self._ip_holders.get(ip))

    def _pod(self, key: Key, pod: Body | None, out: Refreshed, maybe_gone: set[str]) -> None:
        spec = (pod or {}).get("spec") or {}
        status = (pod or {}).get("status") or {}
        ip = status.get("podIP") if pod is not None and not spec.get("hostNetwork") else None
        before_ip = self._pod_ip.get(key)
        if ip != before_ip:
            if before_ip:
                del self._pod_ip[key]
                self._ip_holders[before_ip] -= 1
                if not self._ip_holders[before_ip]:
                    del self._ip_holders[before_ip]
                    maybe_gone.add(before_ip)
            if ip:
                self._pod_ip[key] = ip
                self._ip_holders[ip] = self._ip_holders.get(ip, 0) + 1
        node = spec.get("nodeName") or ""
        facts = None
        if pod is not None and node in self._local_nodes:
            started = status.get("phase") == "Running"
            facts = PodFacts(uid=pod["metadata"].get("uid", ""), namespace=key[0], name=key[1], node=node,
                             ip=status.get("podIP"), host_network=bool(spec.get("hostNetwork")),
                             running=started and not o.is_terminating(pod), started=started,
                             restarts=_restarts(status))
        before = self.local_pods.get(key)
        if facts == before:
            return
        if facts is None:
            del self.local_pods[key]
        else:
            self.local_pods[key] = facts
        out.pods[key] = (before, facts)


def _put(held: dict[Key, Body], key: Key, value: Body | None) -> bool:
    """Keep ``value`` for ``key`` (None: gone); True when that changed what is held."""
    if held.get(key) == value:
        return False
    if value is None:
        del held[key]
    else:
        held[key] = value
    return True


def _slim_service(svc: Body | None) -> Body | None:
    """Only what ``build_state`` and ``service_hosts`` read: a Service's status and annotations are
    not kept (they change without touching the data plane, and would cost memory per Service)."""
    if svc is None:
        return None
    meta = svc.get("metadata") or {}
    return {"metadata": {k: meta[k] for k in ("name", "namespace", "creationTimestamp") if k in meta},
            "spec": svc.get("spec") or {}}


def _slim_endpoints(ep: Body | None) -> Body | None:
    if ep is None:
        return None
    meta = ep.get("metadata") or {}
    return {"metadata": {k: meta[k] for k in ("name", "namespace") if k in meta}, "subsets": ep.get("subsets") or []}


def _restarts(status: Body) -> tuple[tuple[str, int], ...]:
    statuses = status.get("containerStatuses") or []
    return tuple(sorted((str(s.get("name", "")), int(s.get("restartCount") or 0)) for s in statuses))
