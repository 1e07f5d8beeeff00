"""What each page shows, read from the store: plain dicts, no HTML (that is `pages`).

Kept apart from the rendering so the unit tests can check what a page says about the
cluster without parsing HTML, and so the HTML stays a thin, escaped layer over it.
Every read is of the store's in-memory copy (cheap); nothing here writes.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.core import objects
from reconciler.core.keys import ANN_COMMIT, ANN_REVISION
from reconciler.store.protocol import StoreReader


def short(sha: Any) -> str:
    return str(sha or "")[:7]


def _condition(obj: Mapping[str, Any], ctype: str) -> dict[str, Any]:
    return objects.get_condition(obj.get("status") or {}, ctype) or {}


def _revision(obj: Mapping[str, Any]) -> int:
    try:
        return int(objects.annotations(dict(obj)).get(ANN_REVISION, "0"))
    except ValueError:
        return 0


def _pod_row(pod: dict[str, Any]) -> dict[str, Any]:
    status = pod.get("status") or {}
    return {
        "name": objects.meta(pod).get("name", ""),
        "node": (pod.get("spec") or {}).get("nodeName") or "",
        "phase": status.get("phase") or "Pending",
        "ready": objects.pod_is_ready(pod),
        "restarts": objects.restart_count(pod),
        "ip": status.get("podIP") or "",
        "images": [c.get("image", "") for c in (pod.get("spec") or {}).get("containers") or []],
        "terminating": objects.is_terminating(pod),
    }


def deployments(store: StoreReader, *, subjects: Mapping[str, str]) -> list[dict[str, Any]]:
    """Each Deployment: rollout progress, its ReplicaSets (revision <-> commit), history, pods per node."""
    rows = []
    for dep in store.list("Deployment"):
        meta = objects.meta(dep)
        spec, status = dep.get("spec") or {}, dep.get("status") or {}
        namespace, name = meta.get("namespace") or "default", meta.get("name", "")
        replicasets = sorted(store.owned_by("ReplicaSet", owner_kind="Deployment", owner_uid=meta.get("uid", ""),
                                            namespace=namespace), key=_revision, reverse=True)
        sets, pods = [], []
        for rs in replicasets:
            rs_status = rs.get("status") or {}
            commit = objects.annotations(rs).get(ANN_COMMIT, "")
            sets.append({"name": objects.meta(rs).get("name", ""), "revision": _revision(rs), "commit": commit,
                         "subject": subjects.get(commit, ""),
                         "replicas": (rs.get("spec") or {}).get("replicas", 0) or 0,
                         "ready": rs_status.get("readyReplicas", 0) or 0,
                         "images": objects.images_of((rs.get("spec") or {}).get("template") or {})})
            for pod in store.owned_by("Pod", owner_kind="ReplicaSet", owner_uid=objects.meta(rs).get("uid", ""),
                                      namespace=namespace):
                pods.append({**_pod_row(pod), "revision": _revision(rs)})
        by_node: dict[str, list[dict[str, Any]]] = {}
        for pod in sorted(pods, key=lambda p: (p["node"], p["name"])):
            by_node.setdefault(pod["node"] or "(not scheduled)", []).append(pod)
        progressing = _condition(dep, "Progressing")
        history = sorted(store.revisions(namespace=namespace, deployment=name),
                         key=lambda r: int(r.get("revision") or 0), reverse=True)
        rows.append({
            "namespace": namespace, "name": name,
            "desired": spec.get("replicas", 1) if spec.get("replicas") is not None else 1,
            "updated": status.get("updatedReplicas", 0) or 0,
            "ready": status.get("readyReplicas", 0) or 0,
            "available": status.get("availableReplicas", 0) or 0,
            "paused": bool(spec.get("paused")),
            # The status speaks of an older spec until the controller has seen this one
            # (kubectl's rollout status waits for the same).
            "observed": int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0),
            "progressing": {"status": progressing.get("status", ""), "reason": progressing.get("reason", ""),
                            "message": progressing.get("message", "")},
            "available_condition": _condition(dep, "Available").get("status", ""),
            "revision": sets[0]["revision"] if sets else 0,
            "commit": sets[0]["commit"] if sets else objects.annotations(dep).get(ANN_COMMIT, ""),
            "replicasets": sets,
            "pods_by_node": by_node,
            "history": [{"revision": r.get("revision"), "commit": r.get("commit") or "",
                         "subject": r.get("subject") or subjects.get(r.get("commit") or "", ""),
                         "images": list(r.get("images") or [])} for r in history],
        })
    return rows


def nodes(store: StoreReader) -> list[dict[str, Any]]:
    rows = []
    for node in store.list("Node"):
        meta = objects.meta(node)
        status = node.get("status") or {}
        ready = _condition(node, "Ready")
        name = meta.get("name", "")
        pods = [_pod_row(p) for p in store.on_node("Pod", node=name)] if name else []
        rows.append({
            "name": name,
            "ready": ready.get("status") == "True",
            "reason": ready.get("reason") or "",
            "message": ready.get("message") or "",
            "heartbeat": ready.get("lastHeartbeatTime") or "",
            "podCIDR": (node.get("spec") or {}).get("podCIDR") or "",
            "addresses": [f"{a.get('type')}: {a.get('address')}" for a in status.get("addresses") or []],
            "labels": {k: v for k, v in (meta.get("labels") or {}).items()},
            "pods": len(pods),
            "ready_pods": sum(1 for p in pods if p["ready"]),
            "restarts": sum(p["restarts"] for p in pods),
        })
    return rows


def events(store: StoreReader, *, limit: int = 200) -> list[dict[str, Any]]:
    """The newest `limit` Events, newest first."""
    rows = []
    for event in reversed(store.events(limit=limit)):
        involved = event.get("involvedObject") or {}
        rows.append({
            "time": event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp") or "",
            "type": event.get("type") or "Normal",
            "reason": event.get("reason") or "",
            "object": f"{str(involved.get('kind') or '').lower()}/{involved.get('name') or ''}",
            "namespace": involved.get("namespace") or (event.get("metadata") or {}).get("namespace") or "",
            "message": event.get("message") or "",
            "count": event.get("count") or 1,
        })
    return rows


def events_fingerprint(store: StoreReader) -> Any:
    newest = store.events(limit=1)
    if not newest:
        return None
    event = newest[-1]
    return ((event.get("metadata") or {}).get("name"), event.get("count"), event.get("lastTimestamp"))
