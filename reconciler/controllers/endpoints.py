"""The Endpoints controller: for each Service with a selector, the pods that serve it.

It writes the ``Endpoints`` object of the Service's name, Kubernetes' v1 shape::

    subsets: [{addresses: [{ip, nodeName, targetRef: {kind: Pod, name, namespace, uid}}],
               notReadyAddresses: [...], ports: [{name, port, protocol}]}]

as Kubernetes' endpoints controller does:

- A pod counts when it has a pod IP and is not finished (Succeeded/Failed). It is in
  ``addresses`` when its Ready condition is True, else in ``notReadyAddresses``.
- A terminating pod (``deletionTimestamp`` set) is left out at once, unless the
  Service sets ``publishNotReadyAddresses``. This is the step that takes a pod out of
  the service proxy's rotation before its containers get SIGTERM.
- A named ``targetPort`` is resolved per pod through its containers' port names, so
  pods that resolve it to different numbers land in different subsets (pods are
  grouped by the set of ports they resolve to); a pod that cannot resolve a port is
  left out of that port only.
- Everything is sorted, so the same pods always give the same object, and the object
  is written only when it differs: every write wakes the proxy.

Ownership: the Endpoints carry an ownerReference to their Service (with its uid) and
the Service's labels. A Service deleted, or whose selector was removed, has the
Endpoints this controller made deleted. Endpoints without that ownerReference are
not ours and are left alone (Kubernetes leaves selector-less Services' Endpoints to
their users).

``services_selecting(store=, pod=)`` gives the manager the Services a pod change
concerns (those whose selector matches the pod's labels now).
"""
from __future__ import annotations

from typing import Any

import structlog

from reconciler.core import objects as o
from reconciler.core.bodies import Body
from reconciler.core.clock import Clock
from reconciler.core.keys import LABEL_HEADLESS
from reconciler.core.selectors import from_map
from reconciler.core.watches import Cache, Change, For, Watch, Watches
from reconciler.core.workqueue import Result

log = structlog.get_logger("endpoints")



def services_selecting(*, store: Any, pod: Body) -> list[tuple[str, str]]:
    """Keys (namespace, name) of the Services in the pod's namespace whose selector matches it."""
    namespace = (pod.get("metadata") or {}).get("namespace") or "default"
    pod_labels = o.labels(pod)
    keys = []
    for svc in store.list("Service", namespace):
        selector = (svc.get("spec") or {}).get("selector")
        if selector and from_map(selector).matches(pod_labels):
            keys.append((namespace, svc["metadata"]["name"]))
    return keys


def resolve_target_port(*, pod: Body, service_port: dict[str, Any]) -> int | None:
    """The pod's port number for one service port (Kubernetes' FindPort), or None."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, str) and target.isdigit():
        target = int(target)
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    if not isinstance(target, str) or not target:
        return None
    protocol = service_port.get("protocol") or "TCP"
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                number = port.get("containerPort")
                return number if isinstance(number, int) else None
    return None


def desired_subsets(*, service: Body, pods: list[Body]) -> list[dict[str, Any]]:
    """The Endpoints subsets for a Service over the given pods (pure, sorted)."""
    spec = service.get("spec") or {}
    selector = spec.get("selector")
    if not selector:
        return []
    match = from_map(selector)
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    service_ports = spec.get("ports") or []
    headless = spec.get("clusterIP") == "None"
    # ports (as a hashable tuple) -> (ready addresses, not-ready addresses)
    groups: dict[tuple[tuple[str, int, str], ...], tuple[list[dict], list[dict]]] = {}
    for pod in pods:
        if not match.matches(o.labels(pod)):
            continue
        status = pod.get("status") or {}
        ip = status.get("podIP")
        if not ip or status.get("phase") in ("Succeeded", "Failed"):
            continue
        if o.is_terminating(pod) and not publish_not_ready:
            continue
        ports: list[tuple[str, int, str]] = []
        for sp in service_ports:
            number = resolve_target_port(pod=pod, service_port=sp)
            if number is None:
                continue  # Kubernetes skips the pod for this port only
            ports.append((sp.get("name") or "", number, sp.get("protocol") or "TCP"))
        if service_ports and not ports:
            continue
        if not service_ports and not headless:
            continue  # a Service without ports has endpoints only when headless
        meta = pod.get("metadata") or {}
        address: dict[str, Any] = {"ip": ip}
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            address["nodeName"] = node
        address["targetRef"] = {"kind": "Pod", "name": meta.get("name", ""),
                                "namespace": meta.get("namespace", ""), "uid": meta.get("uid", "")}
        ready_list, not_ready_list = groups.setdefault(tuple(sorted(set(ports))), ([], []))
        (ready_list if publish_not_ready or o.pod_is_ready(pod) else not_ready_list).append(address)

    def address_key(a: dict[str, Any]) -> tuple:
        return (tuple(int(x) if x.isdigit() else 0 for x in a["ip"].split(".")), a["ip"], a["targetRef"]["name"])

    subsets = []
    for port_group, (ready_list, not_ready_list) in groups.items():
        subset: dict[str, Any] = {}
        if ready_list:
            subset["addresses"] = sorted(ready_list, key=address_key)
        if not_ready_list:
            subset["notReadyAddresses"] = sorted(not_ready_list, key=address_key)
        if port_group:
            subset["ports"] = [({"name": name} if name else {}) | {"port": number, "protocol": protocol}
                               for name, number, protocol in port_group]
        subsets.append(subset)

    def subset_key(s: dict[str, Any]) -> tuple:
        first = (s.get("addresses") or s.get("notReadyAddresses") or [{"ip": "", "targetRef": {"name": ""}}])[0]
        return (tuple((p.get("name", ""), p["port"], p["protocol"]) for p in s.get("ports") or []), address_key(first))

    return sorted(subsets, key=subset_key)


def _services_of_namespace(change: Change, cache: Cache) -> list[tuple[str, str]]:
    # Every Service of the namespace looks again: a pod that lost a label or went away must
    # leave the ones that selected it, which its new state alone cannot tell.
    return cache.names("Service", change.namespace)


class EndpointsController:
    name = "endpoints"
    workers = 2
    watches: tuple[Watch, ...] = (For("Service"), Watches("Pod", _services_of_namespace))

    def __init__(self, *, store: Any, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def resync_keys(self, cache: Cache, *, first: bool) -> list[tuple[str, str]]:
        return cache.names("Service")

    def reconcile(self, key: tuple[str, str]) -> Result | None:
        namespace, name = key
        svc = self._store.get("Service", namespace, name)
        current = self._store.get("Endpoints", namespace, name)
        if svc is None or not (svc.get("spec") or {}).get("selector"):
            if current is not None and o.owner_name(current, "Service") == name:
                self._store.delete("Endpoints", namespace, name)
                log.info("endpoints deleted", object=f"endpoints/{name}", namespace=namespace, action="delete")
            return None
        desired = self._desired(svc)
        if current is None:
            self._store.put(desired)
            log.info("endpoints created", object=f"endpoints/{name}", namespace=namespace, action="create",
                     ready=_count(desired, "addresses"), notReady=_count(desired, "notReadyAddresses"))
            return None

        def mutate(cur: Body) -> Body | None:
            same = (cur.get("subsets") == desired["subsets"] and o.labels(cur) == o.labels(desired)
                    and (cur["metadata"].get("ownerReferences") or []) == desired["metadata"]["ownerReferences"])
            if same:
                return None
            cur["subsets"] = desired["subsets"]
            cur["metadata"]["labels"] = desired["metadata"]["labels"]
            cur["metadata"]["ownerReferences"] = desired["metadata"]["ownerReferences"]
            return cur

        if self._store.update("Endpoints", namespace, name, mutate) is not None:
            log.info("endpoints updated", object=f"endpoints/{name}", namespace=namespace, action="update",
                     ready=_count(desired, "addresses"), notReady=_count(desired, "notReadyAddresses"))
        return None

    def _desired(self, svc: Body) -> Body:
        meta = svc["metadata"]
        labels = dict(o.labels(svc))
        if (svc.get("spec") or {}).get("clusterIP") == "None":
            labels[LABEL_HEADLESS] = ""
        return {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "labels": labels,
                "ownerReferences": [o.owner_reference(svc)],
            },
            "subsets": desired_subsets(service=svc, pods=self._candidates(svc)),
        }

    def _candidates(self, svc: Body) -> list[Body]:
        """The pods of the Service's namespace that its selector may match: through the
        store's label index (the selector's values as strings, as `labels.from_map`
        compares them), so a Service of a few pods does not decode every pod of a big
        namespace. `desired_subsets` still applies the selector itself."""
        namespace = svc["metadata"]["namespace"]
        selector = (svc.get("spec") or {}).get("selector")
        if not isinstance(selector, dict):
            return self._store.list("Pod", namespace)
        return self._store.with_labels("Pod", labels={k: str(v) for k, v in selector.items()}, namespace=namespace)


def _count(endpoints: Body, field: str) -> int:
    return sum(len(s.get(field) or []) for s in endpoints.get("subsets") or [])
