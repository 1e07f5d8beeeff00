"""The API's writes: what a node agent reports (its Node, its pods' status, deletions, Events).

Git is the only way desired state changes, so the API writes no specs: it offers exactly
the writes a kubelet makes in Kubernetes, for node agents that reach the control plane
only through the API (`reconciler node`):

- `POST /api/v1/nodes`: register a Node (created, or its labels and spec replaced; the
  status it had is kept unless the body carries one), 201 when new.
- `PUT /api/v1/nodes/{name}` and `PUT .../nodes/{name}/status`: replace a Node (labels,
  spec, status), or only its status (heartbeats).
- `PUT /api/v1/namespaces/{ns}/pods/{name}/status`: replace a pod's status.
- `DELETE /api/v1/namespaces/{ns}/pods/{name}`: remove a pod (the kubelet's last step).
- `POST /api/v1/namespaces/{ns}/events`: record an Event (`involvedObject`, type, reason,
  message); a repeat bumps its count, as the store does for local writers.

Each PUT honours `metadata.resourceVersion` in the body as a precondition (409 Conflict
when the object moved on), which is how a remote writer gets the store's read-modify-write
without lost updates: read, change, PUT, and on 409 read again.
Who may make which write is `auth.Guard`'s business, not this module's.
"""
from __future__ import annotations

import ipaddress
from typing import Any

from reconciler.apiserver.status import ApiStatusError
from reconciler.core.keys import ANN_REGISTERED
from reconciler.core.kubeletapi import ANN_KUBELET_CERT_SHA256, FINGERPRINT
from reconciler.core.nodes import DEFAULT_POD_CIDR_POOL


def _body(body: Any, kind: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiStatusError(400, f"the request body must be a {kind} object")
    if body.get("kind") not in (None, kind):
        raise ApiStatusError(400, f"the request body is a {body.get('kind')}, not a {kind}")
    return body


def _check_version(current: dict[str, Any], body: dict[str, Any], what: str) -> None:
    wanted = (body.get("metadata") or {}).get("resourceVersion")
    have = (current.get("metadata") or {}).get("resourceVersion")
    if wanted not in (None, "") and str(wanted) != str(have):
        raise ApiStatusError(409, f"the object has been modified; read {what} again and retry", reason="Conflict")


def register_node(store: Any, body: Any, *, pool: str = DEFAULT_POD_CIDR_POOL) -> tuple[int, dict[str, Any]]:
    node = _body(body, "Node")
    meta = node.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ApiStatusError(400, "a Node needs metadata.name")
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ApiStatusError(400, "metadata.labels must map names to strings")
    spec = dict(node.get("spec") or {})
    spec["podCIDR"] = _pod_cidr(store, name, spec.get("podCIDR"), pool=pool)
    spec["podCIDRs"] = [spec["podCIDR"]]
    # Marked, so the daemon's start-up does not take it for a node that left its config.
    annotations = {ANN_REGISTERED: "true"}
    # The agent's kubelet certificate hash (core/kubeletapi.py), which the control plane pins; an agent
    # registering without one (its server off) takes the old one away.
    served = (meta.get("annotations") or {}).get(ANN_KUBELET_CERT_SHA256)
    if served is not None:
        if not isinstance(served, str) or not FINGERPRINT.match(served):
            raise ApiStatusError(400, f"annotation {ANN_KUBELET_CERT_SHA256} must be 64 lower-case hex digits")
        annotations[ANN_KUBELET_CERT_SHA256] = served
    if store.get("Node", "", name) is None:
        stored = store.put({"apiVersion": "v1", "kind": "Node",
                            "metadata": {"name": name, "labels": labels, "annotations": annotations},
                            "spec": spec, "status": node.get("status") or {}})
        return 201, stored

    def mutate(cur: dict[str, Any]) -> dict[str, Any]:
        cur["metadata"]["labels"] = labels
        kept = {k: v for k, v in (cur["metadata"].get("annotations") or {}).items() if k != ANN_KUBELET_CERT_SHA256}
        cur["metadata"]["annotations"] = {**kept, **annotations}
        cur["spec"] = spec
        if node.get("status"):
            cur["status"] = node["status"]
        return cur

    return 200, store.update("Node", "", name, mutate) or store.get("Node", "", name)


def _pod_cidr(store: Any, name: str, wanted: object, *, pool: str) -> str:
    """The node's pod CIDR: the one it asks for unless another node's overlaps it; else the one it
    had; else the lowest free /24 of the pool."""
    others = {}
    for other in store.list("Node"):
        cidr = (other.get("spec") or {}).get("podCIDR")
        if other["metadata"]["name"] != name and cidr:
            try:
                others[other["metadata"]["name"]] = ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                continue
    if wanted:
        try:
            network = ipaddress.ip_network(str(wanted), strict=True)
        except ValueError:
            raise ApiStatusError(400, f"spec.podCIDR {wanted!r} is not a CIDR") from None
        for other, taken in others.items():
            if network.version == taken.version and network.overlaps(taken):
                raise ApiStatusError(409, f"pod CIDR {network} overlaps node {other}'s {taken}", reason="Conflict")
        return str(network)
    current = store.get("Node", "", name)
    if current is not None and (current.get("spec") or {}).get("podCIDR"):
        return str(current["spec"]["podCIDR"])
    for candidate in ipaddress.ip_network(pool).subnets(new_prefix=24):
        if not any(candidate.overlaps(taken) for taken in others.values() if taken.version == 4):
            return str(candidate)
    raise ApiStatusError(409, f"no free /24 left in the pod CIDR pool {pool}", reason="Conflict")


def replace(store: Any, *, kind: str, namespace: str, name: str, body: Any, status_only: bool) -> dict[str, Any]:
    """PUT of a Node (whole: labels, spec, status) or of a Node's or Pod's status."""
    obj = _body(body, kind)
    if obj.get("metadata", {}).get("name") not in (None, name):
        raise ApiStatusError(400, f"the body names {obj['metadata']['name']}, the path {name}")
    what = f"{kind.lower()} {name}"

    def mutate(cur: dict[str, Any]) -> dict[str, Any]:
        _check_version(cur, obj, what)
        if not status_only:
            cur["metadata"]["labels"] = (obj.get("metadata") or {}).get("labels") or {}
            cur["spec"] = obj.get("spec") or {}
        cur["status"] = obj.get("status") or {}
        return cur

    stored = store.update(kind, namespace, name, mutate)
    if stored is None:
        raise ApiStatusError(404, f'{kind.lower()}s "{name}" not found', reason="NotFound")
    return stored


def delete_pod(store: Any, *, namespace: str, name: str) -> dict[str, Any]:
    if not store.delete("Pod", namespace, name):
        raise ApiStatusError(404, f'pods "{name}" not found', reason="NotFound")
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": name, "kind": "pods"}}


def record_event(store: Any, *, namespace: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("involvedObject"), dict):
        raise ApiStatusError(400, "an Event needs involvedObject {kind, name}")
    involved = body["involvedObject"]
    kind, name = involved.get("kind"), involved.get("name")
    reason, message = body.get("reason"), body.get("message", "")
    if not isinstance(kind, str) or not isinstance(name, str) or not isinstance(reason, str) or not reason:
        raise ApiStatusError(400, "an Event needs involvedObject.kind, involvedObject.name and reason")
    event_type = body.get("type") or "Normal"
    if event_type not in ("Normal", "Warning"):
        raise ApiStatusError(400, f"an Event's type is Normal or Warning, not {event_type!r}")
    store.record_event(kind=kind, namespace="" if kind == "Node" else namespace, name=name,
                       uid=str(involved.get("uid") or ""), type=event_type, reason=reason, message=str(message))
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
